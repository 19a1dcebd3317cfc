/*
 * Field rules shared by the NDJSON and protobuf decoders (SPEC §1), and the
 * per-change problem record. Every text put into a field or reason is valid
 * UTF-8, even when cut short, because callers write it into JSON (the rejects
 * file, HTTP error bodies).
 */
#include "ingest/check.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ingest/pbenc.h"

/* Room kept at the end of reason for " (and N more)". */
#define TAIL_ROOM 24

/* Drops a trailing incomplete UTF-8 sequence left by cutting a string short. */
static void utf8_trim(char *s) {
  size_t n = strlen(s), i = n, cont = 0;
  while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80 && cont < 3) {
    i--;
    cont++;
  }
  if (i == 0) return;
  unsigned char lead = (unsigned char)s[i - 1];
  size_t want = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC0 ? 1 : 0;
  if (lead >= 0xC0 && cont < want) s[i - 1] = '\0';
}

/* Replaces bytes that are not valid UTF-8 (jansson quotes input in its
 * messages) with '?'. */
static void utf8_scrub(char *s) {
  size_t n = strlen(s);
  for (size_t i = 0; i < n;) {
    size_t len = ingest_utf8_seq((const unsigned char *)s + i, n - i);
    if (len) {
      i += len;
    } else {
      s[i++] = '?';
    }
  }
}

void ingest_problems_init(ingest_problems *p) {
  p->n = 0;
  p->untold = 0;
  p->field[0] = '\0';
  p->reason[0] = '\0';
}

void ingest_problem(ingest_problems *p, const char *field, const char *fmt, ...) {
  char why[sizeof p->reason];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  utf8_trim(why);
  utf8_scrub(why);
  if (p->n++ == 0) {
    snprintf(p->field, sizeof p->field, "%s", field);
    utf8_trim(p->field);
    utf8_scrub(p->field);
    memcpy(p->reason, why, sizeof why);
    return;
  }
  /* Later problems ride along in the reason, so one pass over the errors
   * shows everything wrong with the change. */
  size_t used = strlen(p->reason);
  size_t need = strlen("; also ") + strlen(field) + 2 + strlen(why);
  if (p->untold || used + need + TAIL_ROOM >= sizeof p->reason) {
    p->untold++;
    return;
  }
  snprintf(p->reason + used, sizeof p->reason - used, "; also %s%s%s", field, *field ? ": " : "",
           why);
}

void ingest_problems_finish(ingest_problems *p) {
  if (!p->untold) return;
  size_t used = strlen(p->reason);
  snprintf(p->reason + used, sizeof p->reason - used, " (and %u more)", p->untold);
}

void ingest_field_name(char *out, size_t size, const char *prefix, const char *name, size_t n) {
  size_t pl = strlen(prefix);
  if (pl >= size) pl = size - 1;
  memcpy(out, prefix, pl);
  size_t room = size - 1 - pl;
  if (n > room) n = room;
  memcpy(out + pl, name, n);
  out[pl + n] = '\0';
  utf8_trim(out + pl);
}

size_t ingest_utf8_seq(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  if (c < 0xC2 || c > 0xF4) return 0; /* continuation, overlong 2-byte, past U+10FFFF */
  size_t len = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  if (n < len) return 0;
  for (size_t i = 1; i < len; i++)
    if ((s[i] & 0xC0) != 0x80) return 0;
  if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong 3-byte */
  if (c == 0xED && s[1] > 0x9F) return 0; /* UTF-16 surrogates */
  if (c == 0xF0 && s[1] < 0x90) return 0; /* overlong 4-byte */
  if (c == 0xF4 && s[1] > 0x8F) return 0; /* past U+10FFFF */
  return len;
}

bool ingest_utf8_valid(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < n) {
    /* ASCII runs are the common case: test eight bytes at a time */
    if (i + 8 <= n) {
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (!(w & 0x8080808080808080ull)) {
        i += 8;
        continue;
      }
    }
    size_t len = ingest_utf8_seq(s + i, n - i);
    if (!len) return false;
    i += len;
  }
  return true;
}

size_t ingest_utf8_chars(const char *s, size_t n) {
  size_t chars = 0;
  for (size_t i = 0; i < n; i++)
    chars += ((unsigned char)s[i] & 0xC0) != 0x80;
  return chars;
}

/* Reads exactly w digits at s as a number; -1 if any is not a digit. */
static int num(const char *s, int w) {
  int v = 0;
  for (int i = 0; i < w; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

static int days_in_month(int y, int m) {
  static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : days[m - 1];
}

bool ingest_rfc3339_valid(const char *s, size_t n) {
  /* full-date "T" partial-time time-offset; 20 bytes at the least */
  if (n < 20 || n > 64) return false;
  int y = num(s, 4), mo = num(s + 5, 2), d = num(s + 8, 2);
  int h = num(s + 11, 2), mi = num(s + 14, 2), se = num(s + 17, 2);
  if (s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
    return false;
  if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)) return false;
  if (h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 || se > 60) return false;
  size_t i = 19;
  if (s[i] == '.') {
    size_t start = ++i;
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++;
    if (i == start) return false;
  }
  if (i < n && (s[i] == 'Z' || s[i] == 'z')) return i + 1 == n;
  if (i + 6 != n || (s[i] != '+' && s[i] != '-') || s[i + 3] != ':') return false;
  int oh = num(s + i + 1, 2), om = num(s + i + 4, 2);
  return oh >= 0 && oh <= 23 && om >= 0 && om <= 59;
}

void ingest_check_table(ingest_problems *p, const char *s, size_t n) {
  if (n == 0) {
    ingest_problem(p, "table", "must not be empty");
    return;
  }
  if (n > FERRY_TABLE_MAX) {
    ingest_problem(p, "table", "is %zu bytes, over the limit of %d", n, FERRY_TABLE_MAX);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.';
    if (!ok) {
      ingest_problem(p, "table", "byte %zu is not one of A-Z a-z 0-9 _ .", i + 1);
      return;
    }
  }
}

void ingest_check_key(ingest_problems *p, const char *field, const char *s, size_t n) {
  (void)s;
  if (n == 0)
    ingest_problem(p, field, "must not be empty");
  else if (n > FERRY_KEY_MAX)
    ingest_problem(p, field, "is %zu bytes, over the limit of %d", n, FERRY_KEY_MAX);
}

void ingest_check_id(ingest_problems *p, const char *s, size_t n) {
  (void)s;
  if (n == 0)
    ingest_problem(p, "id", "must not be empty");
  else if (n > FERRY_ID_MAX)
    ingest_problem(p, "id", "is %zu bytes, over the limit of %d", n, FERRY_ID_MAX);
}

void ingest_check_at(ingest_problems *p, const char *s, size_t n) {
  if (!ingest_rfc3339_valid(s, n))
    ingest_problem(p, "at", "not an RFC 3339 time like 2026-11-24T10:00:00Z");
}

void ingest_check_customer(ingest_problems *p, const char *field, const char *s, size_t n,
                           const char *want) {
  if (!want || (strlen(want) == n && memcmp(want, s, n) == 0)) return;
  if (n > 64 || memchr(s, '\0', n)) {
    ingest_problem(p, field, "does not match the batch's customer \"%s\"", want);
    return;
  }
  ingest_problem(p, field, "is \"%.*s\" but the batch is for \"%s\"", (int)n, s, want);
}

bool ingest_check_column_name(ingest_problems *p, const char *s, size_t n, size_t index) {
  char field[sizeof p->field];
  if (n == 0) {
    snprintf(field, sizeof field, "row[%zu]", index);
    ingest_problem(p, field, "column name must not be empty");
    return false;
  }
  size_t chars = ingest_utf8_chars(s, n);
  if (chars > FERRY_COLUMN_MAX) {
    ingest_field_name(field, sizeof field, "row.", s, n);
    ingest_problem(p, field, "column name is %zu characters, over the limit of %d", chars,
                   FERRY_COLUMN_MAX);
    return false;
  }
  return true;
}

int ingest_op_from_name(const char *s, size_t n) {
  if ((n == 6 && (!memcmp(s, "upsert", 6) || !memcmp(s, "insert", 6) || !memcmp(s, "update", 6))))
    return PBENC_OP_UPSERT;
  if (n == 6 && !memcmp(s, "delete", 6)) return PBENC_OP_DELETE;
  return 0;
}
