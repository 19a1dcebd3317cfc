/*
 * YAML to a small tree of nodes that remember their line, for the mapping
 * loader. libyaml's event parser does the syntax; this file builds the tree
 * and enforces what a mapping file may use: one document, scalar keys that
 * appear once per mapping, no aliases (an alias can expand exponentially and
 * the mapping has no use for one), no tags but !!str, no NUL bytes, and at
 * most FERRY_MAPPING_MAX_DEPTH levels, so the loader's recursion is bounded.
 *
 * Plain scalars resolve by the YAML 1.2 core schema (null, ~, true, false,
 * decimal/0x/0o integers, decimal reals, .inf, .nan); "yes"/"no"/"on"/"off"
 * stay strings. Quoted and block scalars are strings. A plain integer past
 * int64 becomes a real, as most YAML readers do.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "projector/mapping_internal.h"

typedef struct builder {
  const char *name;
  ferry_error *err;
  ynode *root;
  ynode *stack[FERRY_MAPPING_MAX_DEPTH + 1];
  size_t depth;
  int docs;
} builder;

static ferry_status fail(builder *b, size_t line, const char *fmt, const char *arg) {
  char msg[512];
  snprintf(msg, sizeof msg, fmt, arg ? arg : "");
  return ferry_error_set(b->err, FERRY_EMAPPING, "%s:%zu: %s", b->name, line, msg);
}

void mapping_yaml_free(ynode *n) {
  if (!n) return;
  for (size_t i = 0; i < n->nkids; i++)
    mapping_yaml_free(n->kids[i]);
  free(n->kids);
  free(n->text);
  free(n);
}

/* ---- scalars --------------------------------------------------------------- */

static int one_of(const char *s, const char *const *words) {
  for (; *words; words++)
    if (strcmp(s, *words) == 0) return 1;
  return 0;
}

static void resolve_integer(ynode *n, const char *digits, int base, int neg) {
  errno = 0;
  unsigned long long u = strtoull(digits, NULL, base);
  if (errno == 0 && u <= (unsigned long long)INT64_MAX + (neg ? 1u : 0u)) {
    n->type = YS_INT;
    n->integer = neg ? (int64_t)(0 - u) : (int64_t)u;
  } else {
    n->type = YS_REAL; /* past int64: keep the magnitude */
    n->real = strtod(n->text, NULL);
    if (base != 10) n->real = (neg ? -1.0 : 1.0) * (double)u;
  }
}

static int all_of(const char *s, const char *set) {
  return *s && strspn(s, set) == strlen(s);
}

/* YAML 1.2 core schema resolution of a plain scalar. */
static void resolve_plain(ynode *n) {
  static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
  static const char *const trues[] = {"true", "True", "TRUE", NULL};
  static const char *const falses[] = {"false", "False", "FALSE", NULL};
  static const char *const infs[] = {".inf",  ".Inf",  ".INF", "+.inf", "+.Inf", "+.INF", "-.inf",
                                     "-.Inf", "-.INF", ".nan", ".NaN",  ".NAN",  NULL};
  const char *s = n->text;
  n->type = YS_STRING;
  if (one_of(s, nulls))
    n->type = YS_NULL;
  else if (one_of(s, trues) || one_of(s, falses)) {
    n->type = YS_BOOL;
    n->boolean = one_of(s, trues);
  } else if (one_of(s, infs))
    n->type = YS_NONFINITE;
  else if (strncmp(s, "0x", 2) == 0 && all_of(s + 2, "0123456789abcdefABCDEF"))
    resolve_integer(n, s + 2, 16, 0);
  else if (strncmp(s, "0o", 2) == 0 && all_of(s + 2, "01234567"))
    resolve_integer(n, s + 2, 8, 0);
  else {
    int kind = mapping_number_syntax(s, n->len);
    if (kind == 1) {
      resolve_integer(n, s + (s[0] == '-' || s[0] == '+'), 10, s[0] == '-');
    } else if (kind == 2) {
      n->real = strtod(s, NULL);
      n->type = isfinite(n->real) ? YS_REAL : YS_NONFINITE;
    }
  }
}

static ferry_status make_scalar(builder *b, const yaml_event_t *ev, ynode *n) {
  const char *tag = (const char *)ev->data.scalar.tag;
  const char *v = (const char *)ev->data.scalar.value;
  size_t len = ev->data.scalar.length;
  if (memchr(v, '\0', len)) return fail(b, n->line, "a NUL byte in a string", NULL);
  if (!mapping_utf8_valid(v, len)) return fail(b, n->line, "invalid UTF-8 in a string", NULL);
  n->text = mapping_strndup(v, len);
  if (!n->text) return FERRY_ENOMEM;
  n->len = len;
  if (tag && strcmp(tag, "!") != 0 && strcmp(tag, YAML_STR_TAG) != 0)
    return fail(b, n->line, "unsupported YAML tag %s (only !!str is)", tag);
  if (tag || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
    n->type = YS_STRING;
  else
    resolve_plain(n);
  return FERRY_OK;
}

/* ---- the tree ------------------------------------------------------------------ */

static ferry_status add_kid(ynode *parent, ynode *kid) {
  if (parent->nkids == parent->cap) {
    size_t cap = parent->cap ? parent->cap * 2 : 8;
    ynode **k = mapping_realloc(parent->kids, cap * sizeof *k);
    if (!k) return FERRY_ENOMEM;
    parent->kids = k;
    parent->cap = cap;
  }
  parent->kids[parent->nkids++] = kid;
  return FERRY_OK;
}

/* Hangs n under the open collection (or makes it the root); takes n. */
static ferry_status attach(builder *b, ynode *n) {
  if (b->depth == 0) {
    b->root = n;
    return FERRY_OK;
  }
  ynode *parent = b->stack[b->depth - 1];
  ferry_status st = add_kid(parent, n);
  if (st != FERRY_OK) {
    mapping_yaml_free(n);
    return st;
  }
  if (parent->kind == YNODE_MAP && parent->nkids % 2 == 1 && n->kind != YNODE_SCALAR)
    return fail(b, n->line, "a mapping key must be a plain string", NULL);
  return FERRY_OK;
}

static int key_cmp(const void *x, const void *y) {
  const ynode *a = *(const ynode *const *)x, *b = *(const ynode *const *)y;
  int c = strcmp(a->text, b->text);
  if (c) return c;
  return a->line < b->line ? -1 : a->line > b->line;
}

/* Sorting finds duplicates in n log n; a file with 10^6 keys stays fast.
 * The reported line is the earliest second occurrence of any key. */
static ferry_status check_duplicates(builder *b, const ynode *map) {
  size_t n = map->nkids / 2, dup = SIZE_MAX;
  if (n < 2) return FERRY_OK;
  const ynode **keys = mapping_calloc(n, sizeof *keys);
  if (!keys) return FERRY_ENOMEM;
  for (size_t i = 0; i < n; i++)
    keys[i] = map->kids[2 * i];
  qsort(keys, n, sizeof *keys, key_cmp);
  for (size_t i = 1; i < n; i++)
    if (strcmp(keys[i]->text, keys[i - 1]->text) == 0 &&
        (dup == SIZE_MAX || keys[i]->line < keys[dup]->line))
      dup = i;
  ferry_status st = FERRY_OK;
  if (dup != SIZE_MAX) st = fail(b, keys[dup]->line, "duplicate key '%s'", keys[dup]->text);
  free(keys);
  return st;
}

static ferry_status open_collection(builder *b, const yaml_event_t *ev, ynode_kind kind) {
  size_t line = ev->start_mark.line + 1;
  const char *tag =
      (const char *)(kind == YNODE_MAP ? ev->data.mapping_start.tag : ev->data.sequence_start.tag);
  if (tag && strcmp(tag, kind == YNODE_MAP ? YAML_MAP_TAG : YAML_SEQ_TAG) != 0)
    return fail(b, line, "unsupported YAML tag %s", tag);
  if (b->depth == FERRY_MAPPING_MAX_DEPTH)
    return fail(b, line, "nested deeper than %s levels", "64");
  ynode *n = mapping_calloc(1, sizeof *n);
  if (!n) return FERRY_ENOMEM;
  n->kind = kind;
  n->line = line;
  ferry_status st = attach(b, n);
  if (st == FERRY_OK) b->stack[b->depth++] = n;
  return st;
}

static ferry_status on_event(builder *b, const yaml_event_t *ev, int *end) {
  size_t line = ev->start_mark.line + 1;
  ferry_status st = FERRY_OK;
  ynode *n;
  switch (ev->type) {
  case YAML_DOCUMENT_START_EVENT:
    if (b->docs++) return fail(b, line, "more than one YAML document", NULL);
    return FERRY_OK;
  case YAML_STREAM_END_EVENT: *end = 1; return FERRY_OK;
  case YAML_ALIAS_EVENT: return fail(b, line, "YAML aliases are not supported", NULL);
  case YAML_SCALAR_EVENT:
    n = mapping_calloc(1, sizeof *n);
    if (!n) return FERRY_ENOMEM;
    n->kind = YNODE_SCALAR;
    n->line = line;
    st = attach(b, n); /* attached first, so the tree frees it on error */
    return st == FERRY_OK ? make_scalar(b, ev, n) : st;
  case YAML_SEQUENCE_START_EVENT: return open_collection(b, ev, YNODE_SEQ);
  case YAML_MAPPING_START_EVENT: return open_collection(b, ev, YNODE_MAP);
  case YAML_MAPPING_END_EVENT:
    st = check_duplicates(b, b->stack[b->depth - 1]);
    b->depth--;
    return st;
  case YAML_SEQUENCE_END_EVENT: b->depth--; return FERRY_OK;
  default: return FERRY_OK; /* stream start, document end, no event */
  }
}

/* libyaml reports reader errors (bad UTF-8) by offset, the rest by mark. */
static ferry_status syntax_error(builder *b, const yaml_parser_t *p, const char *buf, size_t len) {
  if (p->error == YAML_MEMORY_ERROR) return FERRY_ENOMEM;
  size_t line = p->problem_mark.line + 1;
  if (p->error == YAML_READER_ERROR) {
    line = 1;
    for (size_t i = 0; i < p->problem_offset && i < len; i++)
      line += buf[i] == '\n';
  }
  char msg[400];
  snprintf(msg, sizeof msg, "YAML syntax error: %s%s%s", p->context ? p->context : "",
           p->context ? ": " : "", p->problem ? p->problem : "unknown problem");
  return ferry_error_set(b->err, FERRY_EMAPPING, "%s:%zu: %s", b->name, line, msg);
}

ferry_status mapping_yaml_parse(const char *name, const char *buf, size_t len, ynode **out,
                                ferry_error *err) {
  builder b = {.name = name, .err = err};
  yaml_parser_t p;
  yaml_event_t ev;
  int end = 0;
  ferry_status st = FERRY_OK;
  *out = NULL;
  if (!yaml_parser_initialize(&p)) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
  while (!end && st == FERRY_OK) {
    if (!yaml_parser_parse(&p, &ev)) {
      st = syntax_error(&b, &p, buf, len);
      break;
    }
    st = on_event(&b, &ev, &end);
    yaml_event_delete(&ev);
  }
  if (st == FERRY_OK && !b.root) st = fail(&b, 1, "the file is empty", NULL);
  if (st == FERRY_ENOMEM) ferry_error_set(err, FERRY_ENOMEM, "%s: out of memory", name);
  if (st != FERRY_OK) {
    mapping_yaml_free(b.root);
    b.root = NULL;
  }
  yaml_parser_delete(&p);
  *out = b.root;
  return st;
}

/* ---- reading the tree ---------------------------------------------------------- */

const ynode *mapping_yaml_get(const ynode *n, const char *key) {
  if (!n || n->kind != YNODE_MAP) return NULL;
  for (size_t i = 0; i + 1 < n->nkids; i += 2)
    if (strcmp(n->kids[i]->text, key) == 0) return n->kids[i + 1];
  return NULL;
}

static json_t *scalar_json(const ynode *n) {
  switch (n->type) {
  case YS_NULL: return json_null();
  case YS_BOOL: return json_boolean(n->boolean);
  case YS_INT: return json_integer(n->integer);
  case YS_REAL: return json_real(n->real);
  case YS_NONFINITE:
  case YS_STRING: return json_stringn(n->text, n->len);
  }
  return NULL;
}

json_t *mapping_yaml_json(const ynode *n) {
  if (n->kind == YNODE_SCALAR) return scalar_json(n);
  json_t *out = n->kind == YNODE_MAP ? json_object() : json_array();
  for (size_t i = 0; out && i < n->nkids; i++) {
    int bad;
    if (n->kind == YNODE_MAP) {
      bad = json_object_set_new(out, n->kids[i]->text, mapping_yaml_json(n->kids[i + 1]));
      i++;
    } else {
      bad = json_array_append_new(out, mapping_yaml_json(n->kids[i]));
    }
    if (bad) {
      json_decref(out);
      out = NULL;
    }
  }
  return out;
}
