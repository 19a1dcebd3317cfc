/*
 * The value rules every part of the projector shares (SPEC §2): how a JSON
 * value renders as text (templates, join keys, `digits`, `to_string`), how two
 * values compare (filters, collect's order_by), and the canonical JSON whose
 * hash is an entity's aggregate version. Also the module's allocation
 * wrappers and its capped byte buffer.
 *
 * DESIGN
 * Numbers. The SPEC renders integers and integral numbers in decimal and
 * everything else in the shortest form that reads back exactly. Integral
 * reals inside int64 print through the integer path, so 4.0 and 4 give the
 * same text (they are the same JSON value, and a lookup on either must find
 * row "4"); -0.0 gives "0" for the same reason. Integral reals beyond int64
 * print their exact decimal expansion in text (%.0f is exact in glibc), but
 * in canonical JSON the shortest round-trip form, because a 301-digit
 * integer is not something JSON parsers (jansson included) read back.
 * "Shortest" is the first of %.15g, %.16g, %.17g that strtod maps back to
 * the same double; %.17g always does. The process runs in the C locale
 * (ferry never calls setlocale), so the decimal point is '.'.
 *
 * Comparison is exact across integer and real: an int64 and a double are
 * compared through the double's integral part (which fits in int64 when the
 * double is in range) and then its fraction, never by converting the int64 to
 * a double, which would make 2^53+1 equal 2^53.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "projector/mapping_internal.h"

/* ---- allocation ---------------------------------------------------------- */

long mapping_alloc_countdown = -1;

int mapping_alloc_fails(void) {
  if (mapping_alloc_countdown < 0) return 0;
  if (mapping_alloc_countdown-- == 0) return 1;
  return 0;
}

void *mapping_malloc(size_t n) {
  return mapping_alloc_fails() ? NULL : malloc(n ? n : 1);
}

void *mapping_calloc(size_t n, size_t size) {
  return mapping_alloc_fails() ? NULL : calloc(n ? n : 1, size ? size : 1);
}

void *mapping_realloc(void *p, size_t n) {
  return mapping_alloc_fails() ? NULL : realloc(p, n ? n : 1);
}

char *mapping_strndup(const char *s, size_t n) {
  char *d = mapping_malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

char *mapping_strdup(const char *s) {
  return mapping_strndup(s, strlen(s));
}

/* ---- mbuf ------------------------------------------------------------------ */

void mbuf_init(mbuf *b, size_t max) {
  b->p = NULL;
  b->len = b->cap = 0;
  b->max = max;
}

ferry_status mbuf_add(mbuf *b, const void *s, size_t n) {
  if (n > b->max - b->len) return FERRY_ETOOBIG;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1)
      cap = cap > b->max / 2 ? b->max + 1 : cap * 2;
    char *p = mapping_realloc(b->p, cap);
    if (!p) return FERRY_ENOMEM;
    b->p = p;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
  return FERRY_OK;
}

ferry_status mbuf_addc(mbuf *b, char c) {
  return mbuf_add(b, &c, 1);
}

ferry_status mbuf_adds(mbuf *b, const char *s) {
  return mbuf_add(b, s, strlen(s));
}

char *mbuf_take(mbuf *b) {
  char *p = b->p;
  if (!p) p = mapping_strndup("", 0);
  b->p = NULL;
  b->len = b->cap = 0;
  return p;
}

void mbuf_free(mbuf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* ---- names and UTF-8 ----------------------------------------------------- */

int mapping_utf8_valid(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t need;
    uint32_t cp, min;
    if (c < 0x80) {
      i++;
      continue;
    }
    if ((c & 0xE0) == 0xC0) {
      need = 1;
      cp = c & 0x1F;
      min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      need = 2;
      cp = c & 0x0F;
      min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      need = 3;
      cp = c & 0x07;
      min = 0x10000;
    } else
      return 0;
    if (n - i <= need) return 0;
    for (size_t k = 1; k <= need; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    /* overlong forms, surrogates and code points past Unicode */
    if (cp < min || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return 0;
    i += need + 1;
  }
  return 1;
}

int mapping_entity_name_valid(const char *s, size_t n) {
  if (n == 0 || n > FERRY_ENTITY_NAME_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '.' || c == '-';
    if (!ok) return 0;
  }
  return 1;
}

/* ---- numbers and text ---------------------------------------------------- */

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

int mapping_number_syntax(const char *s, size_t n) {
  size_t i = 0, whole = 0, frac = 0;
  int real = 0;
  if (i < n && (s[i] == '+' || s[i] == '-')) i++;
  for (; i < n && is_digit(s[i]); i++)
    whole++;
  if (i < n && s[i] == '.') {
    real = 1;
    for (i++; i < n && is_digit(s[i]); i++)
      frac++;
  }
  if (whole + frac == 0) return 0;
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    size_t exp = 0;
    real = 1;
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    for (; i < n && is_digit(s[i]); i++)
      exp++;
    if (!exp) return 0;
  }
  if (i != n) return 0;
  return real ? 2 : 1;
}

/* 2^63 as a double: the first value past int64. */
#define TWO63 9223372036854775808.0

void mapping_real_format(double d, int canonical, char *buf) {
  if (!isfinite(d)) {
    /* jansson never holds one; render something harmless all the same */
    snprintf(buf, MAPPING_NUMBUF, "null");
    return;
  }
  if (d == trunc(d)) {
    if (d >= -TWO63 && d < TWO63) {
      snprintf(buf, MAPPING_NUMBUF, "%lld", (long long)d); /* -0.0 -> "0" */
      return;
    }
    if (!canonical) {
      snprintf(buf, MAPPING_NUMBUF, "%.0f", d);
      return;
    }
  }
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, MAPPING_NUMBUF, "%.*g", prec, d);
    if (prec == 17 || strtod(buf, NULL) == d) return;
  }
}

static ferry_status canon_add(mbuf *b, const json_t *v, int depth);

ferry_status mapping_text_add(mbuf *b, const json_t *v) {
  char num[MAPPING_NUMBUF];
  switch (v ? json_typeof(v) : JSON_NULL) {
  case JSON_NULL: return FERRY_OK;
  case JSON_TRUE: return mbuf_adds(b, "true");
  case JSON_FALSE: return mbuf_adds(b, "false");
  case JSON_INTEGER:
    snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return mbuf_adds(b, num);
  case JSON_REAL: mapping_real_format(json_real_value(v), 0, num); return mbuf_adds(b, num);
  case JSON_STRING: return mbuf_add(b, json_string_value(v), json_string_length(v));
  case JSON_ARRAY:
  case JSON_OBJECT: return canon_add(b, v, 0);
  }
  return FERRY_EINTERNAL;
}

char *ferry_value_text(const json_t *v, size_t *len) {
  mbuf b;
  mbuf_init(&b, FERRY_TEXT_MAX);
  if (mapping_text_add(&b, v) != FERRY_OK) {
    mbuf_free(&b);
    return NULL;
  }
  if (len) *len = b.len;
  return mbuf_take(&b);
}

/* ---- comparison ------------------------------------------------------------ */

static int rank(const json_t *v) {
  switch (v ? json_typeof(v) : JSON_NULL) {
  case JSON_NULL: return 0;
  case JSON_FALSE: return 1;
  case JSON_TRUE: return 2;
  case JSON_INTEGER:
  case JSON_REAL: return 3;
  case JSON_STRING: return 4;
  case JSON_ARRAY: return 5;
  case JSON_OBJECT: return 6;
  }
  return 7;
}

static int cmp_int_real(json_int_t i, double r) {
  if (r >= TWO63) return -1;
  if (r < -TWO63) return 1;
  double t = trunc(r);
  long long ti = (long long)t;
  if (i != ti) return i < ti ? -1 : 1;
  if (r != t) return r > t ? -1 : 1;
  return 0;
}

static int cmp_number(const json_t *a, const json_t *b) {
  if (json_is_integer(a) && json_is_integer(b)) {
    json_int_t x = json_integer_value(a), y = json_integer_value(b);
    return x < y ? -1 : x > y;
  }
  if (json_is_integer(a)) return cmp_int_real(json_integer_value(a), json_real_value(b));
  if (json_is_integer(b)) return -cmp_int_real(json_integer_value(b), json_real_value(a));
  double x = json_real_value(a), y = json_real_value(b);
  return x < y ? -1 : x > y;
}

static int cmp_bytes(const char *a, size_t an, const char *b, size_t bn) {
  int c = memcmp(a, b, an < bn ? an : bn);
  if (c) return c < 0 ? -1 : 1;
  return an < bn ? -1 : an > bn;
}

static int cmp_array(const json_t *a, const json_t *b) {
  size_t an = json_array_size(a), bn = json_array_size(b);
  for (size_t i = 0; i < an && i < bn; i++) {
    int c = ferry_value_compare(json_array_get(a, i), json_array_get(b, i));
    if (c) return c;
  }
  return an < bn ? -1 : an > bn;
}

/* The member of o with the smallest key greater than (after, alen); NULL
 * after = none yet. Quadratic, but allocation-free, and rows hold no objects. */
static void *next_member(const json_t *o, const char *after, size_t alen) {
  void *best = NULL;
  for (void *it = json_object_iter((json_t *)o); it; it = json_object_iter_next((json_t *)o, it)) {
    const char *k = json_object_iter_key(it);
    size_t kn = json_object_iter_key_len(it);
    if (after && cmp_bytes(k, kn, after, alen) <= 0) continue;
    if (!best || cmp_bytes(k, kn, json_object_iter_key(best), json_object_iter_key_len(best)) < 0)
      best = it;
  }
  return best;
}

/* Objects compare as their members in key order: key, then value. */
static int cmp_object(const json_t *a, const json_t *b) {
  const char *after = NULL;
  size_t alen = 0;
  for (;;) {
    void *ia = next_member(a, after, alen), *ib = next_member(b, after, alen);
    if (!ia || !ib) return ia ? 1 : ib ? -1 : 0;
    const char *ka = json_object_iter_key(ia), *kb = json_object_iter_key(ib);
    size_t na = json_object_iter_key_len(ia), nb = json_object_iter_key_len(ib);
    int c = cmp_bytes(ka, na, kb, nb);
    if (c) return c; /* lexicographic over (key, value) pairs */
    c = ferry_value_compare(json_object_iter_value(ia), json_object_iter_value(ib));
    if (c) return c;
    after = ka;
    alen = na;
  }
}

int ferry_value_compare(const json_t *a, const json_t *b) {
  int ra = rank(a), rb = rank(b);
  if (ra != rb) return ra < rb ? -1 : 1;
  switch (ra) {
  case 3: return cmp_number(a, b);
  case 4:
    return cmp_bytes(json_string_value(a), json_string_length(a), json_string_value(b),
                     json_string_length(b));
  case 5: return cmp_array(a, b);
  case 6: return cmp_object(a, b);
  default: return 0; /* null, false, true: the rank is the value */
  }
}

int ferry_value_equal(const json_t *a, const json_t *b) {
  return ferry_value_compare(a, b) == 0;
}

/* ---- canonical JSON ---------------------------------------------------------- */

/* Deeper than any payload or row can be; jansson's parser stops at 2048. */
#define CANON_MAX_DEPTH 2048

static ferry_status canon_string(mbuf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  ferry_status st = mbuf_addc(b, '"');
  size_t run = 0; /* bytes copied as they are, added in one go */
  for (size_t i = 0; i < n && st == FERRY_OK; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    st = mbuf_add(b, s + run, i - run);
    run = i + 1;
    char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
    switch (c) {
    case '"': esc[1] = '"'; break;
    case '\\': esc[1] = '\\'; break;
    case '\b': esc[1] = 'b'; break;
    case '\f': esc[1] = 'f'; break;
    case '\n': esc[1] = 'n'; break;
    case '\r': esc[1] = 'r'; break;
    case '\t': esc[1] = 't'; break;
    default:
      memcpy(esc + 1, "u00", 3);
      esc[4] = hex[c >> 4];
      esc[5] = hex[c & 15];
    }
    if (st == FERRY_OK) st = mbuf_add(b, esc, strlen(esc));
  }
  if (st == FERRY_OK) st = mbuf_add(b, s + run, n - run);
  if (st == FERRY_OK) st = mbuf_addc(b, '"');
  return st;
}

typedef struct member {
  const char *key;
  size_t len;
  const json_t *value;
} member;

static int member_cmp(const void *x, const void *y) {
  const member *a = x, *b = y;
  return cmp_bytes(a->key, a->len, b->key, b->len);
}

static ferry_status canon_object(mbuf *b, const json_t *v, int depth) {
  size_t n = json_object_size(v), i = 0;
  ferry_status st = FERRY_OK;
  member *ms = mapping_calloc(n, sizeof *ms);
  if (!ms) return FERRY_ENOMEM;
  for (void *it = json_object_iter((json_t *)v); it && i < n;
       it = json_object_iter_next((json_t *)v, it), i++) {
    ms[i].key = json_object_iter_key(it);
    ms[i].len = json_object_iter_key_len(it);
    ms[i].value = json_object_iter_value(it);
  }
  qsort(ms, i, sizeof *ms, member_cmp);
  st = mbuf_addc(b, '{');
  for (size_t k = 0; k < i && st == FERRY_OK; k++) {
    if (k) st = mbuf_addc(b, ',');
    if (st == FERRY_OK) st = canon_string(b, ms[k].key, ms[k].len);
    if (st == FERRY_OK) st = mbuf_addc(b, ':');
    if (st == FERRY_OK) st = canon_add(b, ms[k].value, depth + 1);
  }
  if (st == FERRY_OK) st = mbuf_addc(b, '}');
  free(ms);
  return st;
}

static ferry_status canon_add(mbuf *b, const json_t *v, int depth) {
  char num[MAPPING_NUMBUF];
  ferry_status st = FERRY_OK;
  if (depth > CANON_MAX_DEPTH) return FERRY_ETOOBIG;
  switch (v ? json_typeof(v) : JSON_NULL) {
  case JSON_NULL: return mbuf_adds(b, "null");
  case JSON_TRUE: return mbuf_adds(b, "true");
  case JSON_FALSE: return mbuf_adds(b, "false");
  case JSON_INTEGER:
    snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return mbuf_adds(b, num);
  case JSON_REAL: mapping_real_format(json_real_value(v), 1, num); return mbuf_adds(b, num);
  case JSON_STRING: return canon_string(b, json_string_value(v), json_string_length(v));
  case JSON_ARRAY:
    st = mbuf_addc(b, '[');
    for (size_t i = 0; i < json_array_size(v) && st == FERRY_OK; i++) {
      if (i) st = mbuf_addc(b, ',');
      if (st == FERRY_OK) st = canon_add(b, json_array_get(v, i), depth + 1);
    }
    return st == FERRY_OK ? mbuf_addc(b, ']') : st;
  case JSON_OBJECT: return canon_object(b, v, depth);
  }
  return FERRY_EINTERNAL;
}

char *ferry_value_canonical(const json_t *v) {
  mbuf b;
  mbuf_init(&b, FERRY_CANONICAL_MAX);
  if (canon_add(&b, v, 0) != FERRY_OK) {
    mbuf_free(&b);
    return NULL;
  }
  return mbuf_take(&b);
}

ferry_status ferry_value_hash(const json_t *v, char hex[33]) {
  static const char digits[] = "0123456789abcdef";
  mbuf b;
  mbuf_init(&b, FERRY_CANONICAL_MAX);
  ferry_status st = canon_add(&b, v, 0);
  if (st == FERRY_OK) {
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits(b.p ? b.p : "", b.len));
    for (int i = 0; i < 16; i++) {
      hex[2 * i] = digits[c.digest[i] >> 4];
      hex[2 * i + 1] = digits[c.digest[i] & 15];
    }
    hex[32] = '\0';
  }
  mbuf_free(&b);
  return st;
}
