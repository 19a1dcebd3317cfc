/*
 * The NDJSON decoder (SPEC §1): one change per line, parsed with jansson and
 * checked field by field; a valid change is packed straight into the part's
 * arena (pbenc.h), an invalid one becomes one error naming its line.
 *
 * DESIGN: integers outside int64. jansson refuses the whole line with "too
 * big integer" and no hint of which field held it. To still name the field
 * (and report the line's other problems), the line is copied, each such token
 * is overwritten by MARKER, a JSON string of the same length that no input can
 * produce (it holds a NUL, which the first parse rejects), and the copy is
 * parsed again; the checks report MARKER as "integer out of range".
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/fastjson.h"
#include "ingest/part.h"
#include "ingest/pbenc.h"

#define MARKER "\"\\u0000\\u0001ferry\""
#define MARKER_LEN 19 /* every int64 overflow token has 19 bytes or more */
#define MARKER_VALUE "\0\1ferry"
#define MARKER_VALUE_LEN 7
#define MAX_REMARKS 64

typedef struct line_ctx {
  ingest_part *p;
  const char *text;
  size_t len;
  bool marked; /* the parse saw MARKER in place of huge integers */
  ingest_problems pr;
  pbenc_head h;
  size_t row_size; /* packed bytes of the row's columns */
  char keybuf[FERRY_KEY_MAX + 1];
} line_ctx;

/* The known fields of a change; NULL when absent. */
typedef struct fields {
  json_t *table, *key, *op, *version, *id, *at, *row, *customer;
} fields;

static bool is_marker(const line_ctx *c, const json_t *v) {
  return c->marked && json_is_string(v) && json_string_length(v) == MARKER_VALUE_LEN &&
         memcmp(json_string_value(v), MARKER_VALUE, MARKER_VALUE_LEN) == 0;
}

static const char *type_name(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "an object";
  case JSON_ARRAY: return "an array";
  case JSON_STRING: return "a string";
  case JSON_INTEGER: return "an integer";
  case JSON_REAL: return "a number with a fraction or exponent";
  case JSON_TRUE:
  case JSON_FALSE: return "a boolean";
  case JSON_NULL: return "null";
  }
  return "a value";
}

static void wrong_type(line_ctx *c, const char *field, const char *want, const json_t *v) {
  if (is_marker(c, v))
    ingest_problem(&c->pr, field, "integer out of range for int64");
  else
    ingest_problem(&c->pr, field, "expected %s, got %s", want, type_name(v));
}

/* ------------------------------------------------------------- fields --- */

static void check_table(line_ctx *c, json_t *v) {
  if (!v) {
    ingest_problem(&c->pr, "table", "required");
    return;
  }
  if (!json_is_string(v)) {
    wrong_type(c, "table", "a string", v);
    return;
  }
  c->h.table = json_string_value(v);
  c->h.table_len = json_string_length(v);
  ingest_check_table(&c->pr, c->h.table, c->h.table_len);
}

/* Appends one part of a composite key to keybuf at *n; false if it is bad. */
static bool key_part(line_ctx *c, json_t *v, size_t index, size_t *n) {
  char field[32], num[32];
  snprintf(field, sizeof field, "key[%zu]", index);
  const char *s = num;
  size_t len;
  if (json_is_integer(v)) {
    len = (size_t)snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
  } else if (json_is_string(v) && !is_marker(c, v)) {
    s = json_string_value(v);
    len = json_string_length(v);
    if (len == 0) return ingest_problem(&c->pr, field, "must not be empty"), false;
  } else {
    return wrong_type(c, field, "a string or an integer", v), false;
  }
  size_t total = *n + (index ? 1 : 0) + len;
  if (total <= FERRY_KEY_MAX) {
    if (index) c->keybuf[(*n)++] = '|';
    memcpy(c->keybuf + *n, s, len);
  }
  *n = total; /* past the limit only the length is kept, for the message */
  return true;
}

static void check_key(line_ctx *c, json_t *v) {
  size_t n = 0;
  if (!v) {
    ingest_problem(&c->pr, "key", "required");
    return;
  }
  if (json_is_string(v) && !is_marker(c, v)) {
    c->h.key = json_string_value(v);
    c->h.key_len = json_string_length(v);
    ingest_check_key(&c->pr, "key", c->h.key, c->h.key_len);
    return;
  }
  if (json_is_integer(v)) {
    n = (size_t)snprintf(c->keybuf, sizeof c->keybuf, "%" JSON_INTEGER_FORMAT,
                         json_integer_value(v));
  } else if (json_is_array(v)) {
    if (json_array_size(v) == 0) {
      ingest_problem(&c->pr, "key", "array must not be empty");
      return;
    }
    bool ok = true;
    for (size_t i = 0; i < json_array_size(v); i++)
      ok &= key_part(c, json_array_get(v, i), i, &n);
    if (!ok) return;
  } else {
    wrong_type(c, "key", "a string, an integer or an array of them", v);
    return;
  }
  c->h.key = c->keybuf;
  c->h.key_len = n;
  ingest_check_key(&c->pr, "key", c->keybuf, n);
}

static void check_op(line_ctx *c, json_t *v) {
  if (!v) {
    ingest_problem(&c->pr, "op", "required");
    return;
  }
  if (!json_is_string(v)) {
    wrong_type(c, "op", "a string", v);
    return;
  }
  c->h.op = ingest_op_from_name(json_string_value(v), json_string_length(v));
  if (!c->h.op) ingest_problem(&c->pr, "op", "must be upsert, insert, update or delete");
}

static void check_version(line_ctx *c, json_t *v) {
  if (!v) {
    ingest_problem(&c->pr, "version", "required");
    return;
  }
  if (!json_is_integer(v)) {
    wrong_type(c, "version", "an integer", v);
    return;
  }
  json_int_t n = json_integer_value(v);
  if (n < 1) {
    ingest_problem(&c->pr, "version", "must be >= 1, got %" JSON_INTEGER_FORMAT, n);
    return;
  }
  c->h.version = (uint64_t)n;
}

/* Optional strings: absent or null leave the field unset. */
static const char *optional_string(line_ctx *c, const char *field, json_t *v, size_t *n) {
  *n = 0;
  if (!v || json_is_null(v)) return NULL;
  if (!json_is_string(v)) return wrong_type(c, field, "a string", v), NULL;
  *n = json_string_length(v);
  return json_string_value(v);
}

static void check_optional(line_ctx *c, const fields *f) {
  size_t n;
  const char *s = optional_string(c, "id", f->id, &n);
  if (s) {
    ingest_check_id(&c->pr, s, n);
    c->h.id = s;
    c->h.id_len = n;
  }
  s = optional_string(c, "at", f->at, &n);
  if (s) {
    ingest_check_at(&c->pr, s, n);
    c->h.at = s;
    c->h.at_len = n;
  }
  s = optional_string(c, "customer", f->customer, &n);
  if (s) ingest_check_customer(&c->pr, "customer", s, n, c->p->customer);
}

/* ---------------------------------------------------------------- row --- */

/* The packed form of a column value; false (with a problem) if not allowed. */
static bool column_value(line_ctx *c, const char *field, json_t *v, pbenc_value *out) {
  memset(out, 0, sizeof *out);
  switch (json_typeof(v)) {
  case JSON_NULL: out->kind = PBENC_NULL; return true;
  case JSON_TRUE:
  case JSON_FALSE: out->kind = PBENC_BOOL, out->b = json_is_true(v); return true;
  case JSON_INTEGER: out->kind = PBENC_INT, out->i = json_integer_value(v); return true;
  case JSON_REAL: out->kind = PBENC_DOUBLE, out->d = json_real_value(v); return true;
  case JSON_STRING:
    if (is_marker(c, v)) break;
    out->kind = PBENC_STRING;
    out->s = json_string_value(v);
    out->n = json_string_length(v);
    return true;
  case JSON_OBJECT:
  case JSON_ARRAY:
    ingest_problem(&c->pr, field, "nested objects and arrays are not allowed");
    return false;
  }
  ingest_problem(&c->pr, field, "integer out of range for int64");
  return false;
}

static void check_row(line_ctx *c, json_t *row) {
  if (!row || json_is_null(row)) {
    if (c->h.op == PBENC_OP_UPSERT) ingest_problem(&c->pr, "row", "required for upsert");
    return;
  }
  if (!json_is_object(row)) {
    wrong_type(c, "row", "an object", row);
    return;
  }
  if (c->h.op == PBENC_OP_DELETE) {
    ingest_problem(&c->pr, "row", "not allowed on delete");
    return;
  }
  const char *name;
  json_t *v;
  size_t index = 0;
  json_object_foreach(row, name, v) {
    size_t n = json_object_iter_key_len(json_object_key_to_iter(name));
    pbenc_value pv;
    if (ingest_check_column_name(&c->pr, name, n, index)) {
      char field[sizeof c->pr.field];
      ingest_field_name(field, sizeof field, "row.", name, n);
      if (column_value(c, field, v, &pv)) c->row_size += pbenc_column_size(n, &pv);
    }
    index++;
  }
}

/* Sorts the object's members into f; anything else is an unknown field. */
static void collect_fields(line_ctx *c, json_t *obj, fields *f) {
  const char *name;
  json_t *v;
  json_object_foreach(obj, name, v) {
    json_t **slot = NULL;
    switch (name[0]) {
    case 't': slot = strcmp(name, "table") ? NULL : &f->table; break;
    case 'k': slot = strcmp(name, "key") ? NULL : &f->key; break;
    case 'o': slot = strcmp(name, "op") ? NULL : &f->op; break;
    case 'v': slot = strcmp(name, "version") ? NULL : &f->version; break;
    case 'i': slot = strcmp(name, "id") ? NULL : &f->id; break;
    case 'a': slot = strcmp(name, "at") ? NULL : &f->at; break;
    case 'r': slot = strcmp(name, "row") ? NULL : &f->row; break;
    case 'c': slot = strcmp(name, "customer") ? NULL : &f->customer; break;
    }
    if (slot) {
      *slot = v;
      continue;
    }
    char field[sizeof c->pr.field];
    size_t n = json_object_iter_key_len(json_object_key_to_iter(name));
    ingest_field_name(field, sizeof field, "", name, n);
    ingest_problem(&c->pr, field, "unknown field");
  }
}

/* Checks a parsed line; returns the row (possibly NULL) for emit(). */
static json_t *check_change(line_ctx *c, json_t *doc) {
  fields f;
  memset(&f, 0, sizeof f);
  if (!json_is_object(doc)) {
    ingest_problem(&c->pr, "", "expected a JSON object, got %s", type_name(doc));
    return NULL;
  }
  collect_fields(c, doc, &f);
  check_table(c, f.table);
  check_key(c, f.key);
  check_op(c, f.op);
  check_version(c, f.version);
  check_optional(c, &f);
  check_row(c, f.row);
  return json_is_object(f.row) ? f.row : NULL;
}

static ferry_status emit(line_ctx *c, json_t *row) {
  ferry_status st = FERRY_OK;
  size_t size = pbenc_head_size(&c->h) + c->row_size;
  uint8_t *out = ingest_part_reserve(c->p, size, &st);
  if (!out) return st;
  const uint8_t *id;
  size_t id_len;
  uint8_t *q = pbenc_put_head(out, &c->h, &id, &id_len);
  const char *name;
  json_t *v;
  json_object_foreach(row, name, v) {
    pbenc_value pv;
    size_t n = json_object_iter_key_len(json_object_key_to_iter(name));
    column_value(c, "", v, &pv);
    q = pbenc_put_column(q, name, n, &pv);
  }
  if (q != out + size) return FERRY_EINTERNAL;
  return ingest_part_accept(c->p, out, size, id, id_len);
}

/* ------------------------------------------------------- parse errors --- */

/* Overwrites the integer token that ends at or just before pos with MARKER. */
static bool mark_token(char *s, size_t len, size_t pos) {
  size_t end = pos < len ? pos : len, start;
  for (int skip = 0; skip < 2 && end > 0 && (s[end - 1] < '0' || s[end - 1] > '9'); skip++)
    end--;
  start = end;
  while (start > 0 && s[start - 1] >= '0' && s[start - 1] <= '9')
    start--;
  if (start > 0 && s[start - 1] == '-') start--;
  if (end - start < MARKER_LEN) return false;
  if (end < len && (s[end] == '.' || s[end] == 'e' || s[end] == 'E')) return false;
  memcpy(s + start, MARKER, MARKER_LEN);
  memset(s + start + MARKER_LEN, ' ', end - start - MARKER_LEN);
  return true;
}

/* Parses a copy of the line with every huge integer replaced by MARKER. */
static ferry_status parse_marked(line_ctx *c, json_error_t *je, json_t **doc) {
  char *copy = malloc(c->len);
  if (!copy) return FERRY_ENOMEM;
  memcpy(copy, c->text, c->len);
  for (int i = 0; i < MAX_REMARKS && !*doc; i++) {
    if (json_error_code(je) != json_error_numeric_overflow) break;
    if (!mark_token(copy, c->len, (size_t)je->position)) break;
    *doc = json_loadb(copy, c->len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, je);
  }
  free(copy);
  c->marked = *doc != NULL;
  return FERRY_OK;
}

/* The line did not parse: find out why, or parse it after all (huge integers). */
static ferry_status parse_failed(line_ctx *c, json_error_t *je, json_t **doc) {
  ferry_status st = FERRY_OK;
  if (json_error_code(je) == json_error_out_of_memory) return FERRY_ENOMEM;
  if (json_error_code(je) == json_error_numeric_overflow) {
    if ((st = parse_marked(c, je, doc)) || *doc) return st;
  }
  if (json_error_code(je) == json_error_invalid_utf8)
    ingest_problem(&c->pr, "", "invalid UTF-8 at byte %d", je->position);
  else
    ingest_problem(&c->pr, "", "invalid JSON at column %d: %s", je->column, je->text);
  return FERRY_OK;
}

/* ------------------------------------------------------------- lines --- */

static bool blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return false;
  return true;
}

static ferry_status decode_line(ingest_part *p, fastjson_buf *fb, const char *text, size_t len,
                                uint64_t lineno) {
  ferry_status st = FERRY_OK;
  json_t *doc = NULL;
  json_t *row = NULL;
  line_ctx c;
  c.p = p;
  c.text = text;
  c.len = len;
  c.marked = false;
  c.row_size = 0;
  memset(&c.h, 0, sizeof c.h);
  ingest_problems_init(&c.pr);

  if (len > FERRY_LINE_MAX) {
    ingest_problem(&c.pr, "", "line is %zu bytes, over the limit of %u", len, FERRY_LINE_MAX);
    goto done;
  }
  if (!p->slow_only && fastjson_line(p, fb, text, len, &st)) goto done;
  json_error_t je;
  doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
  if (!doc && ((st = parse_failed(&c, &je, &doc)) || !doc)) goto done;
  row = check_change(&c, doc);
  if (!c.pr.n && ingest_part_wants_output(p)) st = emit(&c, row);

done:
  if (!st && c.pr.n) {
    ingest_problems_finish(&c.pr);
    st = ingest_part_reject(p, lineno, &c.pr, text, len);
  }
  json_decref(doc);
  return st;
}

ferry_status ingest_ndjson_decode(ingest_part *p, const char *buf, size_t len) {
  ferry_status st = FERRY_OK;
  fastjson_buf fb = {NULL, 0};
  size_t at = 0;
  while (at < len && !st) {
    const char *line = buf + at;
    const char *nl = memchr(line, '\n', len - at);
    size_t n = nl ? (size_t)(nl - line) : len - at;
    at += n + (nl ? 1 : 0);
    p->units++;
    if (n && line[n - 1] == '\r') n--;
    if (blank(line, n)) continue;
    st = decode_line(p, &fb, line, n, p->units);
  }
  fastjson_buf_free(&fb);
  return st;
}
