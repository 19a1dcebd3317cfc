/*
 * The NDJSON fast path (see fastjson.h): a strict scanner for the common
 * shape of a change line. Anything it is not sure of (an unknown or repeated
 * field, a nested value, a number out of range, a bad escape, a rule broken)
 * makes it decline, never guess.
 */
#include "ingest/fastjson.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/pbenc.h"

#define MAX_COLUMNS 256 /* wider rows go the jansson way */
#define SMALL_ROW 16    /* up to this many columns, duplicates are found pairwise */
#define HASH_SLOTS 512  /* a power of two, at least twice MAX_COLUMNS */

enum {
  F_TABLE = 1,
  F_KEY = 2,
  F_OP = 4,
  F_VERSION = 8,
  F_ID = 16,
  F_AT = 32,
  F_ROW = 64,
  F_CUSTOMER = 128
};

typedef struct column {
  const char *name;
  size_t name_len;
  pbenc_value v;
} column;

typedef struct scan {
  const char *p, *end;
  char *out; /* next free byte of the scratch buffer */
  unsigned seen;
  pbenc_head h;
  const char *customer;
  size_t customer_len;
  size_t ncols;
  bool row_object; /* "row" was an object, not null */
  char keybuf[FERRY_KEY_MAX + 1];
  column cols[MAX_COLUMNS];
} scan;

void fastjson_buf_free(fastjson_buf *b) {
  free(b->mem);
  b->mem = NULL;
  b->cap = 0;
}

static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

static void skip_ws(scan *s) {
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\r' || *s->p == '\n'))
    s->p++;
}

/* Consumes c (after white space); false if the next byte is something else. */
static bool expect(scan *s, char c) {
  skip_ws(s);
  if (s->p >= s->end || *s->p != c) return false;
  s->p++;
  skip_ws(s);
  return true;
}

static int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Reads XXXX of a \uXXXX escape at p; -1 if malformed. */
static long hex4(const char *p, const char *end) {
  if (end - p < 4) return -1;
  long v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hex(p[i]);
    if (h < 0) return -1;
    v = v << 4 | h;
  }
  return v;
}

static char *put_utf8(char *o, long cp) {
  if (cp < 0x80) {
    *o++ = (char)cp;
  } else if (cp < 0x800) {
    *o++ = (char)(0xC0 | cp >> 6);
    *o++ = (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *o++ = (char)(0xE0 | cp >> 12);
    *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
    *o++ = (char)(0x80 | (cp & 0x3F));
  } else {
    *o++ = (char)(0xF0 | cp >> 18);
    *o++ = (char)(0x80 | (cp >> 12 & 0x3F));
    *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
    *o++ = (char)(0x80 | (cp & 0x3F));
  }
  return o;
}

/* Decodes the escape at *pp (just past the backslash) into *oo. Declines
 * \u0000 and lone surrogates, as jansson rejects them. */
static bool unescape(const char **pp, const char *end, char **oo) {
  const char *p = *pp;
  static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
  const char *k = p < end && *p ? strchr(from, *p) : NULL;
  if (k) {
    *(*oo)++ = to[k - from];
    *pp = p + 1;
    return true;
  }
  if (p >= end || *p != 'u') return false;
  long cp = hex4(p + 1, end);
  p += 5;
  if (cp <= 0 || (cp >= 0xDC00 && cp <= 0xDFFF)) return false;
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    long lo = end - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2, end) : -1;
    if (lo < 0xDC00 || lo > 0xDFFF) return false;
    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    p += 6;
  }
  *oo = put_utf8(*oo, cp);
  *pp = p;
  return true;
}

/* Reads the string at the cursor (on its quote). Plain strings point into the
 * line; escaped ones are decoded into scratch. */
static bool string(scan *s, const char **str, size_t *n) {
  const char *p = s->p + 1, *start = p, *end = s->end;
  char *o = NULL;
  while (p < end) {
    unsigned char c = (unsigned char)*p;
    if (c == '"') break;
    if (c < 0x20) return false;
    if (c == '\\') {
      if (!o) o = memcpy(s->out, start, (size_t)(p - start)), o += p - start;
      p++;
      if (!unescape(&p, end, &o)) return false;
      continue;
    }
    size_t len = c < 0x80 ? 1 : ingest_utf8_seq((const unsigned char *)p, (size_t)(end - p));
    if (!len) return false;
    if (o) memcpy(o, p, len), o += len;
    p += len;
  }
  if (p >= end) return false;
  s->p = p + 1;
  if (!o) {
    *str = start;
    *n = (size_t)(p - start);
  } else {
    *str = s->out;
    *n = (size_t)(o - s->out);
    s->out = o;
  }
  return true;
}

/* A JSON number: an int64 integer or a finite double, as jansson reads them. */
static bool number(scan *s, pbenc_value *v) {
  const char *p = s->p, *start = p, *end = s->end;
  bool neg = p < end && *p == '-', real = false;
  uint64_t u = 0;
  if (neg) p++;
  if (p >= end || !is_digit(*p)) return false;
  if (*p == '0' && p + 1 < end && is_digit(p[1])) return false;
  for (; p < end && is_digit(*p); p++) {
    unsigned d = (unsigned)(*p - '0');
    if (u > (UINT64_MAX - d) / 10) return false;
    u = u * 10 + d;
  }
  if (p < end && *p == '.') {
    real = true;
    if (++p >= end || !is_digit(*p)) return false;
    while (p < end && is_digit(*p))
      p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    real = true;
    if (++p < end && (*p == '+' || *p == '-')) p++;
    if (p >= end || !is_digit(*p)) return false;
    while (p < end && is_digit(*p))
      p++;
  }
  s->p = p;
  if (!real) {
    if (u > (uint64_t)INT64_MAX + neg) return false; /* jansson: too big integer */
    v->kind = PBENC_INT;
    v->i = neg ? (int64_t)(0 - u) : (int64_t)u;
    return true;
  }
  char tmp[64], *e;
  size_t len = (size_t)(p - start);
  if (len >= sizeof tmp) return false;
  memcpy(tmp, start, len);
  tmp[len] = '\0';
  errno = 0;
  v->kind = PBENC_DOUBLE;
  v->d = strtod(tmp, &e);
  /* a locale with another decimal point stops strtod early: decline */
  return e == tmp + len && !((v->d == HUGE_VAL || v->d == -HUGE_VAL) && errno == ERANGE);
}

static bool literal(scan *s, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return false;
  s->p += n;
  return true;
}

/* A row value: null, a boolean, a number or a string. */
static bool scalar(scan *s, pbenc_value *v) {
  if (s->p >= s->end) return false;
  switch (*s->p) {
  case '"': v->kind = PBENC_STRING; return string(s, &v->s, &v->n);
  case 'n': v->kind = PBENC_NULL; return literal(s, "null");
  case 't': v->kind = PBENC_BOOL, v->b = true; return literal(s, "true");
  case 'f': v->kind = PBENC_BOOL, v->b = false; return literal(s, "false");
  default: return number(s, v);
  }
}

/* A string or null (then *str is NULL). */
static bool optional_string(scan *s, const char **str, size_t *n) {
  *str = NULL;
  *n = 0;
  if (s->p < s->end && *s->p == 'n') return literal(s, "null");
  return s->p < s->end && *s->p == '"' && string(s, str, n);
}

/* Appends a key part (a string or an integer) to keybuf at *n. */
static bool key_part(scan *s, size_t *n, bool first) {
  pbenc_value v;
  char num[24];
  if (!scalar(s, &v)) return false;
  if (v.kind == PBENC_INT) {
    v.n = (size_t)snprintf(num, sizeof num, "%lld", (long long)v.i);
    v.s = num;
  } else if (v.kind != PBENC_STRING || v.n == 0) {
    return false;
  }
  size_t sep = first ? 0 : 1;
  if (*n + sep + v.n > FERRY_KEY_MAX) return false;
  if (sep) s->keybuf[(*n)++] = '|';
  memcpy(s->keybuf + *n, v.s, v.n);
  *n += v.n;
  return true;
}

static bool key(scan *s) {
  size_t n = 0;
  if (s->p < s->end && *s->p == '"') return string(s, &s->h.key, &s->h.key_len);
  if (s->p < s->end && *s->p == '[') {
    if (!expect(s, '[')) return false;
    for (bool first = true;; first = false) {
      if (!key_part(s, &n, first)) return false;
      if (expect(s, ']')) break;
      if (!expect(s, ',')) return false;
    }
  } else if (!key_part(s, &n, true)) {
    return false;
  }
  s->h.key = s->keybuf;
  s->h.key_len = n;
  return true;
}

static bool row(scan *s) {
  if (s->p < s->end && *s->p == 'n') return literal(s, "null");
  if (!expect(s, '{')) return false;
  s->row_object = true;
  if (s->p < s->end && *s->p == '}') return s->p++, true;
  for (;;) {
    if (s->ncols == MAX_COLUMNS || s->p >= s->end || *s->p != '"') return false;
    column *c = &s->cols[s->ncols++];
    if (!string(s, &c->name, &c->name_len) || !expect(s, ':') || !scalar(s, &c->v)) return false;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') return s->p++, true;
    if (!expect(s, ',')) return false;
  }
}

static unsigned field_bit(const char *k, size_t n) {
  static const struct {
    const char *name;
    unsigned bit;
  } names[] = {{"table", F_TABLE}, {"key", F_KEY}, {"op", F_OP},   {"version", F_VERSION},
               {"id", F_ID},       {"at", F_AT},   {"row", F_ROW}, {"customer", F_CUSTOMER}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strlen(names[i].name) == n && memcmp(names[i].name, k, n) == 0) return names[i].bit;
  return 0;
}

static bool member_value(scan *s, unsigned bit) {
  pbenc_value v;
  switch (bit) {
  case F_TABLE: return s->p < s->end && *s->p == '"' && string(s, &s->h.table, &s->h.table_len);
  case F_KEY: return key(s);
  case F_OP: {
    const char *op;
    size_t n;
    if (s->p >= s->end || *s->p != '"' || !string(s, &op, &n)) return false;
    return (s->h.op = ingest_op_from_name(op, n)) != 0;
  }
  case F_VERSION:
    if (!number(s, &v) || v.kind != PBENC_INT || v.i < 1) return false;
    s->h.version = (uint64_t)v.i;
    return true;
  case F_ID: return optional_string(s, &s->h.id, &s->h.id_len);
  case F_AT: return optional_string(s, &s->h.at, &s->h.at_len);
  case F_CUSTOMER: return optional_string(s, &s->customer, &s->customer_len);
  case F_ROW: return row(s);
  }
  return false;
}

/* The whole line: one object of known, unrepeated fields, then only space. */
static bool object(scan *s) {
  if (!expect(s, '{')) return false;
  for (;;) {
    const char *k;
    size_t n;
    if (s->p >= s->end || *s->p != '"' || !string(s, &k, &n)) return false;
    unsigned bit = field_bit(k, n);
    if (!bit || (s->seen & bit) || !expect(s, ':')) return false;
    s->seen |= bit;
    if (!member_value(s, bit)) return false;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') break;
    if (!expect(s, ',')) return false;
  }
  s->p++;
  skip_ws(s);
  return s->p == s->end;
}

static uint32_t name_hash(const char *s, size_t n) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h;
}

static bool same_name(const column *a, const column *b) {
  return a->name_len == b->name_len && memcmp(a->name, b->name, a->name_len) == 0;
}

/* jansson rejects a repeated member name; so do we (by declining). */
static bool names_unique(const scan *s) {
  if (s->ncols <= SMALL_ROW) {
    for (size_t i = 1; i < s->ncols; i++)
      for (size_t j = 0; j < i; j++)
        if (same_name(&s->cols[i], &s->cols[j])) return false;
    return true;
  }
  uint16_t slots[HASH_SLOTS]; /* column index + 1; 0 is free */
  memset(slots, 0, sizeof slots);
  for (size_t i = 0; i < s->ncols; i++) {
    uint32_t h = name_hash(s->cols[i].name, s->cols[i].name_len) & (HASH_SLOTS - 1);
    for (; slots[h]; h = (h + 1) & (HASH_SLOTS - 1))
      if (same_name(&s->cols[slots[h] - 1], &s->cols[i])) return false;
    slots[h] = (uint16_t)(i + 1);
  }
  return true;
}

/* The rules of SPEC §1, by the same checks the jansson path uses. */
static bool valid(ingest_part *p, scan *s) {
  ingest_problems pr;
  ingest_problems_init(&pr);
  if ((s->seen & (F_TABLE | F_KEY | F_OP | F_VERSION)) != (F_TABLE | F_KEY | F_OP | F_VERSION))
    return false;
  ingest_check_table(&pr, s->h.table, s->h.table_len);
  ingest_check_key(&pr, "key", s->h.key, s->h.key_len);
  if (s->h.id) ingest_check_id(&pr, s->h.id, s->h.id_len);
  if (s->h.at) ingest_check_at(&pr, s->h.at, s->h.at_len);
  if (s->customer)
    ingest_check_customer(&pr, "customer", s->customer, s->customer_len, p->customer);
  if (s->h.op == PBENC_OP_UPSERT && !s->row_object) return false;
  if (s->h.op == PBENC_OP_DELETE && s->row_object) return false;
  for (size_t i = 0; i < s->ncols && !pr.n; i++)
    ingest_check_column_name(&pr, s->cols[i].name, s->cols[i].name_len, i);
  return pr.n == 0 && names_unique(s);
}

static ferry_status emit(ingest_part *p, const scan *s) {
  ferry_status st = FERRY_OK;
  size_t size = pbenc_head_size(&s->h);
  for (size_t i = 0; i < s->ncols; i++)
    size += pbenc_column_size(s->cols[i].name_len, &s->cols[i].v);
  uint8_t *out = ingest_part_reserve(p, size, &st);
  if (!out) return st;
  const uint8_t *id;
  size_t id_len;
  uint8_t *q = pbenc_put_head(out, &s->h, &id, &id_len);
  for (size_t i = 0; i < s->ncols; i++)
    q = pbenc_put_column(q, s->cols[i].name, s->cols[i].name_len, &s->cols[i].v);
  if (q != out + size) return FERRY_EINTERNAL;
  return ingest_part_accept(p, out, size, id, id_len);
}

bool fastjson_line(ingest_part *p, fastjson_buf *buf, const char *line, size_t n,
                   ferry_status *st) {
  /* unescaping never makes a string longer, so a line's worth of scratch
   * holds every string of the line */
  if (buf->cap < n) {
    size_t cap = n < 4096 ? 4096 : n;
    char *mem = realloc(buf->mem, cap);
    if (!mem) return false; /* let the jansson path try, and report */
    buf->mem = mem;
    buf->cap = cap;
  }
  scan s;
  s.p = line;
  s.end = line + n;
  s.out = buf->mem;
  s.seen = 0;
  memset(&s.h, 0, sizeof s.h);
  s.customer = NULL;
  s.customer_len = 0;
  s.ncols = 0;
  s.row_object = false;
  if (!object(&s) || !valid(p, &s)) return false;
  *st = ingest_part_wants_output(p) ? emit(p, &s) : FERRY_OK;
  return true;
}
