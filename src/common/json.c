/*
 * Compact JSON serialisation with shortest round-trip doubles and optional
 * sorted keys. Strings are escaped per RFC 8259 (control characters as \u00XX,
 * non-ASCII UTF-8 passed through, since every string ferry holds was validated
 * as UTF-8 on the way in).
 */
#include "ferry/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct out {
  char *p;
  size_t len, cap;
  int oom;
  int depth;
} out;

static void put(out *o, const char *s, size_t n) {
  if (o->oom) return;
  if (o->len + n + 1 > o->cap) {
    size_t cap = o->cap ? o->cap : 256;
    while (cap < o->len + n + 1) cap *= 2;
    char *p = realloc(o->p, cap);
    if (!p) { o->oom = 1; return; }
    o->p = p;
    o->cap = cap;
  }
  memcpy(o->p + o->len, s, n);
  o->len += n;
  o->p[o->len] = '\0';
}

size_t ferry_json_format_double(char *buf, double d) {
  if (!isfinite(d)) { memcpy(buf, "null", 5); return 4; }
  if (d == 0) { memcpy(buf, "0", 2); return 1; } /* -0.0 too: JSON has one zero */
  if (d == trunc(d) && fabs(d) < 1e17) return (size_t)snprintf(buf, 32, "%.0f", d);
  for (int prec = 1; prec <= 17; prec++) {
    int n = snprintf(buf, 32, "%.*g", prec, d);
    if (strtod(buf, NULL) == d) return (size_t)n;
  }
  return (size_t)snprintf(buf, 32, "%.17g", d);
}

static void put_string(out *o, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t run = 0;
  put(o, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    put(o, s + run, i - run);
    run = i + 1;
    switch (c) {
    case '"': put(o, "\\\"", 2); break;
    case '\\': put(o, "\\\\", 2); break;
    case '\n': put(o, "\\n", 2); break;
    case '\r': put(o, "\\r", 2); break;
    case '\t': put(o, "\\t", 2); break;
    default: {
      char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      put(o, esc, 6);
    }
    }
  }
  put(o, s + run, n - run);
  put(o, "\"", 1);
}

static int cmp_keys(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void dump(out *o, const json_t *v, unsigned flags);

/* A newline and the indentation of the current depth, when indenting. */
static void newline(out *o, unsigned flags) {
  if (!(flags & FERRY_JSON_INDENT)) return;
  put(o, "\n", 1);
  for (int i = 0; i < o->depth; i++) put(o, "  ", 2);
}

static void dump_object(out *o, const json_t *v, unsigned flags) {
  size_t n = json_object_size(v), i = 0;
  const char **keys = malloc((n ? n : 1) * sizeof *keys);
  const char *k;
  json_t *x;
  if (!keys) { o->oom = 1; return; }
  json_object_foreach((json_t *)v, k, x) keys[i++] = k;
  if (flags & FERRY_JSON_SORTED) qsort(keys, n, sizeof *keys, cmp_keys);
  put(o, "{", 1);
  o->depth++;
  for (i = 0; i < n; i++) {
    if (i) put(o, ",", 1);
    newline(o, flags);
    put_string(o, keys[i], strlen(keys[i]));
    put(o, (flags & FERRY_JSON_INDENT) ? ": " : ":", (flags & FERRY_JSON_INDENT) ? 2 : 1);
    dump(o, json_object_get(v, keys[i]), flags);
  }
  o->depth--;
  if (n) newline(o, flags);
  put(o, "}", 1);
  free(keys);
}

static void dump(out *o, const json_t *v, unsigned flags) {
  char num[32];
  switch (json_typeof(v)) {
  case JSON_OBJECT: dump_object(o, v, flags); break;
  case JSON_ARRAY:
    put(o, "[", 1);
    o->depth++;
    for (size_t i = 0; i < json_array_size(v); i++) {
      if (i) put(o, ",", 1);
      newline(o, flags);
      dump(o, json_array_get(v, i), flags);
    }
    o->depth--;
    if (json_array_size(v)) newline(o, flags);
    put(o, "]", 1);
    break;
  case JSON_STRING: put_string(o, json_string_value(v), json_string_length(v)); break;
  case JSON_INTEGER:
    put(o, num, (size_t)snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v)));
    break;
  case JSON_REAL: put(o, num, ferry_json_format_double(num, json_real_value(v))); break;
  case JSON_TRUE: put(o, "true", 4); break;
  case JSON_FALSE: put(o, "false", 5); break;
  case JSON_NULL: put(o, "null", 4); break;
  }
}

char *ferry_json_dump(const json_t *v, unsigned flags) {
  out o = {NULL, 0, 0, 0, 0};
  if (!v) return NULL;
  dump(&o, v, flags);
  if (o.oom) { free(o.p); return NULL; }
  return o.p;
}
