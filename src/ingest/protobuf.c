/*
 * The protobuf decoder (SPEC §1): one ferry.v1.ChangeBatch in, the same
 * checks as NDJSON, errors numbered by the change's 1-based position in the
 * batch (0 for the batch itself).
 *
 * DESIGN. The batch's own two fields are read here (a few lines of wire
 * format), and each Change is unpacked by protobuf-c on its own, so a broken
 * change is one error at its index and memory holds one change's structs at a
 * time. protobuf-c allocates from a scratch arena reset per change: no malloc
 * per field. That arena also answers a question protobuf-c cannot: a string's
 * real length. protobuf-c hands strings back NUL-terminated without their
 * length, so "ab\0cd" would silently arrive as "ab". Every allocation carries
 * its size in a 16-byte header, and protobuf-c allocates each string as its
 * wire length + 1, so str_len() reads the true length and an embedded NUL is
 * caught (the unit tests pin this behaviour of protobuf-c). Unset strings are
 * protobuf_c_empty_string, which is not ours and has length 0.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/v1/change.pb-c.h"
#include "ingest/part.h"
#include "ingest/pbenc.h"

#define HEADER 16 /* keeps protobuf-c's structs 16-byte aligned */
#define SCRATCH_CHUNK ((size_t)256 << 10)
#define SCRATCH_FACTOR 64 /* unpacked structs per wire byte, at the worst */
#define SMALL_ROW 16      /* up to this many columns, duplicates are found pairwise */

typedef struct pb_ctx {
  ingest_part *p;
  arena scratch;
  ProtobufCAllocator alloc;
  ingest_problems pr;
  pbenc_head h;
  size_t row_size;
} pb_ctx;

/* -------------------------------------------------- scratch allocator --- */

static void *scratch_alloc(void *data, size_t size) {
  pb_ctx *c = data;
  unsigned char *p = arena_alloc(&c->scratch, HEADER + size, 16);
  if (!p) return NULL;
  memcpy(p, &size, sizeof size);
  return p + HEADER;
}

static void scratch_free(void *data, void *ptr) {
  (void)data; /* released all at once when the next change starts */
  (void)ptr;
}

static size_t str_len(const char *s) {
  size_t size;
  if (!s || s == protobuf_c_empty_string) return 0;
  memcpy(&size, s - HEADER, sizeof size);
  return size - 1;
}

/* A string field must be valid UTF-8 without NUL bytes; false if not. */
static bool text_ok(pb_ctx *c, const char *field, const char *s, size_t n) {
  if (memchr(s, '\0', n))
    ingest_problem(&c->pr, field, "contains a NUL byte");
  else if (!ingest_utf8_valid(s, n))
    ingest_problem(&c->pr, field, "invalid UTF-8");
  else
    return true;
  return false;
}

static void check_unknown(pb_ctx *c, const char *field, const ProtobufCMessage *m) {
  for (size_t i = 0; i < m->n_unknown_fields; i++)
    ingest_problem(&c->pr, field, "unknown field number %u", m->unknown_fields[i].tag);
}

/* -------------------------------------------------------------- change --- */

static void check_head(pb_ctx *c, const Ferry__V1__Change *m) {
  size_t n;
  check_unknown(c, "", &m->base);
  c->h.table = m->table;
  c->h.table_len = n = str_len(m->table);
  if (n == 0)
    ingest_problem(&c->pr, "table", "required");
  else if (text_ok(c, "table", m->table, n))
    ingest_check_table(&c->pr, m->table, n);
  c->h.key = m->key;
  c->h.key_len = n = str_len(m->key);
  if (n == 0)
    ingest_problem(&c->pr, "key", "required");
  else if (text_ok(c, "key", m->key, n))
    ingest_check_key(&c->pr, "key", m->key, n);
  c->h.op = (int)m->op;
  if (m->op == FERRY__V1__OP__OP_UNSPECIFIED)
    ingest_problem(&c->pr, "op", "required");
  else if (m->op != FERRY__V1__OP__OP_UPSERT && m->op != FERRY__V1__OP__OP_DELETE)
    ingest_problem(&c->pr, "op", "unknown value %d", (int)m->op);
  c->h.version = m->version;
  if (m->version < 1) ingest_problem(&c->pr, "version", "must be >= 1");
}

static void check_optional(pb_ctx *c, const Ferry__V1__Change *m) {
  size_t n;
  if ((n = str_len(m->id)) > 0) {
    c->h.id = m->id;
    c->h.id_len = n;
    if (text_ok(c, "id", m->id, n)) ingest_check_id(&c->pr, m->id, n);
  }
  if ((n = str_len(m->at)) > 0) {
    c->h.at = m->at;
    c->h.at_len = n;
    if (text_ok(c, "at", m->at, n)) ingest_check_at(&c->pr, m->at, n);
  }
  if ((n = str_len(m->customer)) > 0 && text_ok(c, "customer", m->customer, n))
    ingest_check_customer(&c->pr, "customer", m->customer, n, c->p->customer);
}

static bool is_text(const char *s, size_t n) {
  return !memchr(s, '\0', n) && ingest_utf8_valid(s, n);
}

/* Field names are built only when there is a problem to report: building
 * "row.Name" for every column costs more than checking it. */
static void column_field(char *out, size_t size, const Ferry__V1__Column *col, size_t i) {
  size_t n = str_len(col->name);
  if (n && is_text(col->name, n))
    ingest_field_name(out, size, "row.", col->name, n);
  else
    snprintf(out, size, "row[%zu]", i);
}

/* The packed form of a column's value; false (with a problem) if not allowed. */
static bool column_value(pb_ctx *c, const Ferry__V1__Column *col, size_t i, pbenc_value *out) {
  const Ferry__V1__Value *v = col->value;
  char field[sizeof c->pr.field];
  memset(out, 0, sizeof *out);
  out->kind = PBENC_NULL; /* an absent value or kind is null */
  if (!v) return true;
  if (v->base.n_unknown_fields) {
    column_field(field, sizeof field, col, i);
    check_unknown(c, field, &v->base);
  }
  switch (v->kind_case) {
  case FERRY__V1__VALUE__KIND__NOT_SET:
  case FERRY__V1__VALUE__KIND_NULL_VALUE: return true;
  case FERRY__V1__VALUE__KIND_BOOL_VALUE:
    out->kind = PBENC_BOOL, out->b = v->bool_value;
    return true;
  case FERRY__V1__VALUE__KIND_INT_VALUE: out->kind = PBENC_INT, out->i = v->int_value; return true;
  case FERRY__V1__VALUE__KIND_DOUBLE_VALUE:
    out->kind = PBENC_DOUBLE, out->d = v->double_value;
    if (isfinite(v->double_value)) return true;
    column_field(field, sizeof field, col, i);
    ingest_problem(&c->pr, field, "not a finite number");
    return false;
  case FERRY__V1__VALUE__KIND_STRING_VALUE:
    out->kind = PBENC_STRING, out->s = v->string_value, out->n = str_len(v->string_value);
    if (is_text(out->s, out->n)) return true;
    column_field(field, sizeof field, col, i);
    return text_ok(c, field, out->s, out->n);
  default: break;
  }
  column_field(field, sizeof field, col, i);
  ingest_problem(&c->pr, field, "unknown kind %d", (int)v->kind_case);
  return false;
}

static bool same_name(const Ferry__V1__Column *a, const Ferry__V1__Column *b) {
  size_t n = str_len(a->name);
  return n == str_len(b->name) && memcmp(a->name, b->name, n) == 0;
}

static int cmp_column(const void *a, const void *b) {
  const Ferry__V1__Column *x = *(Ferry__V1__Column *const *)a;
  const Ferry__V1__Column *y = *(Ferry__V1__Column *const *)b;
  size_t xn = str_len(x->name), yn = str_len(y->name);
  int r = memcmp(x->name, y->name, xn < yn ? xn : yn);
  return r ? r : (xn > yn) - (xn < yn);
}

static void duplicate(pb_ctx *c, const Ferry__V1__Column *col) {
  char field[sizeof c->pr.field];
  ingest_field_name(field, sizeof field, "row.", col->name, str_len(col->name));
  ingest_problem(&c->pr, field, "duplicate column name");
}

/* Names are unique within a row. Narrow rows compare pairs; wide ones sort a
 * copy of the column list (pairs would let one wide row stall a batch). */
static ferry_status check_unique(pb_ctx *c, const Ferry__V1__Change *m) {
  if (m->n_row <= SMALL_ROW) {
    for (size_t i = 1; i < m->n_row; i++) {
      size_t seen = 0;
      for (size_t j = 0; j < i; j++)
        seen += same_name(m->row[i], m->row[j]);
      if (seen == 1) duplicate(c, m->row[i]); /* told once however often it repeats */
    }
    return FERRY_OK;
  }
  Ferry__V1__Column **sorted = arena_alloc(&c->scratch, m->n_row * sizeof *sorted, 16);
  if (!sorted) return c->scratch.over_cap ? FERRY_ETOOBIG : FERRY_ENOMEM;
  memcpy(sorted, m->row, m->n_row * sizeof *sorted);
  qsort(sorted, m->n_row, sizeof *sorted, cmp_column);
  for (size_t i = 1; i < m->n_row; i++)
    if (same_name(sorted[i - 1], sorted[i]) && (i < 2 || !same_name(sorted[i - 2], sorted[i])))
      duplicate(c, sorted[i]); /* told once however often it repeats */
  return FERRY_OK;
}

/* Checks one column; false if its name is unusable. */
static bool check_column(pb_ctx *c, const Ferry__V1__Column *col, size_t i) {
  size_t n = str_len(col->name);
  bool text = is_text(col->name, n);
  if (col->base.n_unknown_fields || !text) {
    char field[sizeof c->pr.field];
    snprintf(field, sizeof field, "row[%zu]", i);
    check_unknown(c, field, &col->base);
    if (!text) return text_ok(c, field, col->name, n);
  }
  if (!ingest_check_column_name(&c->pr, col->name, n, i)) return false;
  pbenc_value v;
  if (column_value(c, col, i, &v)) c->row_size += pbenc_column_size(n, &v);
  return true;
}

static ferry_status check_row(pb_ctx *c, const Ferry__V1__Change *m) {
  bool names_ok = true;
  if (m->op == FERRY__V1__OP__OP_UPSERT && m->n_row == 0)
    ingest_problem(&c->pr, "row", "required for upsert");
  if (m->op == FERRY__V1__OP__OP_DELETE && m->n_row > 0)
    ingest_problem(&c->pr, "row", "not allowed on delete");
  for (size_t i = 0; i < m->n_row; i++)
    names_ok &= check_column(c, m->row[i], i);
  return names_ok ? check_unique(c, m) : FERRY_OK;
}

static ferry_status emit(pb_ctx *c, const Ferry__V1__Change *m) {
  ferry_status st = FERRY_OK;
  size_t size = pbenc_head_size(&c->h) + c->row_size;
  uint8_t *out = ingest_part_reserve(c->p, size, &st);
  if (!out) return st;
  const uint8_t *id;
  size_t id_len;
  uint8_t *q = pbenc_put_head(out, &c->h, &id, &id_len);
  for (size_t i = 0; i < m->n_row; i++) {
    pbenc_value v;
    column_value(c, m->row[i], i, &v);
    q = pbenc_put_column(q, m->row[i]->name, str_len(m->row[i]->name), &v);
  }
  if (q != out + size) return FERRY_EINTERNAL;
  return ingest_part_accept(c->p, out, size, id, id_len);
}

static ferry_status decode_change(pb_ctx *c, const uint8_t *data, size_t n, uint64_t index) {
  ferry_status st = FERRY_OK;
  Ferry__V1__Change *m = NULL;
  ingest_problems_init(&c->pr);
  memset(&c->h, 0, sizeof c->h);
  c->row_size = 0;
  arena_reset(&c->scratch);

  if (n > FERRY_LINE_MAX) {
    ingest_problem(&c->pr, "", "change is %zu bytes, over the limit of %u", n, FERRY_LINE_MAX);
    goto done;
  }
  c->scratch.cap = SCRATCH_FACTOR * n + SCRATCH_CHUNK;
  m = ferry__v1__change__unpack(&c->alloc, n, data);
  if (!m) {
    ingest_problem(&c->pr, "", "%s",
                   c->scratch.over_cap ? "too many fields to decode"
                                       : "does not decode as ferry.v1.Change");
    goto done;
  }
  check_head(c, m);
  check_optional(c, m);
  if ((st = check_row(c, m))) goto done;
  if (!c->pr.n && ingest_part_wants_output(c->p)) st = emit(c, m);

done:
  if (!st && c->pr.n) {
    ingest_problems_finish(&c->pr);
    st = ingest_part_reject(c->p, index, &c->pr, NULL, 0);
  }
  return st;
}

/* ---------------------------------------------------------------- batch --- */

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  *v = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    *v |= (uint64_t)(b & 0x7F) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

/* Walks the batch's fields: base is the batch's first byte, *p the cursor. */
typedef struct cursor {
  const uint8_t *base, *p, *end;
} cursor;

/* Reads the next field of the batch; 1 read, 0 at the end, -1 (with a
 * problem) if the bytes are not a ChangeBatch. */
static int next_field(pb_ctx *c, cursor *cur, uint64_t *field, const uint8_t **data, size_t *n) {
  uint64_t tag, len;
  size_t at = (size_t)(cur->p - cur->base);
  if (cur->p == cur->end) return 0;
  if (!read_varint(&cur->p, cur->end, &tag)) {
    ingest_problem(&c->pr, "", "not a ferry.v1.ChangeBatch: truncated field tag at byte %zu", at);
    return -1;
  }
  if ((tag >> 3) < 1 || (tag >> 3) > 2 || (tag & 7) != 2) {
    ingest_problem(&c->pr, "",
                   "not a ferry.v1.ChangeBatch: unknown field %llu (wire type %u) at byte %zu",
                   (unsigned long long)(tag >> 3), (unsigned)(tag & 7), at);
    return -1;
  }
  if (!read_varint(&cur->p, cur->end, &len) || len > (uint64_t)(cur->end - cur->p)) {
    ingest_problem(&c->pr, "", "not a ferry.v1.ChangeBatch: field at byte %zu runs past the end",
                   at);
    return -1;
  }
  *field = tag >> 3;
  *data = cur->p;
  *n = (size_t)len;
  cur->p += len;
  return 1;
}

/* Checks the batch as a whole, its framing and its customer, and counts its
 * changes; false (with a problem) if it is not a batch for this customer. */
static bool check_batch(pb_ctx *c, const uint8_t *buf, size_t len, size_t *changes) {
  cursor cur = {buf, buf, buf + len};
  const uint8_t *data, *customer = NULL;
  size_t n, customer_len = 0;
  uint64_t field;
  int r;
  *changes = 0;
  while ((r = next_field(c, &cur, &field, &data, &n)) > 0) {
    if (field == 1)
      customer = data, customer_len = n; /* the last one counts */
    else
      (*changes)++;
  }
  if (r == 0 && customer && customer_len &&
      text_ok(c, "customer", (const char *)customer, customer_len))
    ingest_check_customer(&c->pr, "customer", (const char *)customer, customer_len, c->p->customer);
  return c->pr.n == 0;
}

ferry_status ingest_protobuf_check(ingest_part *p, const char *buf, size_t len, size_t *changes) {
  pb_ctx c;
  memset(&c, 0, sizeof c);
  c.p = p;
  ingest_problems_init(&c.pr);
  if (check_batch(&c, (const uint8_t *)buf, len, changes)) return FERRY_OK;
  /* a batch that does not frame or is for another customer has no changes
   * to speak of: one error, at index 0 */
  *changes = 0;
  ingest_problems_finish(&c.pr);
  return ingest_part_reject(p, 0, &c.pr, NULL, 0);
}

ferry_status ingest_protobuf_decode_range(ingest_part *p, const char *buf, size_t len, size_t first,
                                          size_t n) {
  ferry_status st = FERRY_OK;
  pb_ctx c;
  memset(&c, 0, sizeof c);
  c.p = p;
  c.alloc.alloc = scratch_alloc;
  c.alloc.free = scratch_free;
  c.alloc.allocator_data = &c;
  arena_init(&c.scratch, SCRATCH_CHUNK, SCRATCH_CHUNK);
  cursor cur = {(const uint8_t *)buf, (const uint8_t *)buf, (const uint8_t *)buf + len};
  const uint8_t *data;
  size_t size, index = 0;
  uint64_t field;
  while (!st && index < first + n && next_field(&c, &cur, &field, &data, &size) > 0) {
    if (field != 2 || index++ < first) continue;
    p->units++;
    st = decode_change(&c, data, size, p->units);
  }
  arena_free(&c.scratch);
  return st;
}
