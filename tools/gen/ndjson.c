/* ferry-gen's NDJSON writer: see ndjson.h. Lines are built in a fixed buffer with bounds
 * checks (an overflow marks the line, and sending it fails the run), strings are escaped as
 * JSON requires, and the remembered lines are the only heap memory. */
#include "ndjson.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void gen_writer_init(gen_writer *w, FILE *out) {
  memset(w, 0, sizeof *w);
  w->out = out;
}

void gen_writer_wave(gen_writer *w, unsigned k, int64_t start) {
  w->wave = k;
  w->seq = 0;
  w->clock = start;
}

void gen_writer_free(gen_writer *w) {
  for (size_t i = 0; i < GEN_RECENT; i++)
    free(w->recent[i]);
  for (size_t i = 0; i < w->nlate; i++)
    free(w->late[i]);
  free(w->late);
  memset(w->recent, 0, sizeof w->recent);
  w->late = NULL;
  w->nlate = w->late_cap = 0;
}

void gen_format_time(int64_t t, char out[32]) {
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void gen_format_date(int64_t t, char out[16]) {
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(out, 16, "%Y-%m-%d", &tm);
}

static void addf(gen_line *l, const char *fmt, ...) {
  va_list ap;
  if (l->over) return;
  va_start(ap, fmt);
  int k = vsnprintf(l->s + l->n, sizeof l->s - l->n, fmt, ap);
  va_end(ap);
  if (k < 0 || (size_t)k >= sizeof l->s - l->n)
    l->over = true;
  else
    l->n += (size_t)k;
}

/* A JSON string literal: quotes, backslashes and control bytes escaped; UTF-8 passes as is. */
static void add_string(gen_line *l, const char *s) {
  addf(l, "\"");
  for (const unsigned char *p = (const unsigned char *)s; *p && !l->over; p++) {
    if (*p == '"' || *p == '\\')
      addf(l, "\\%c", *p);
    else if (*p < 0x20)
      addf(l, "\\u%04x", *p);
    else
      addf(l, "%c", *p);
  }
  addf(l, "\"");
}

void gen_line_begin(gen_writer *w, gen_line *l, const char *table, uint64_t key, const char *op,
                    uint64_t version, char ts[32]) {
  char at[32];
  l->n = 0;
  l->over = false;
  l->first_col = true;
  w->seq++;
  w->clock += 1 + (int64_t)(w->seq % 7); /* the legacy product commits a change every few s */
  gen_format_time(w->clock, at);
  if (ts) memcpy(ts, at, sizeof at);
  addf(l, "{\"table\":\"%s\",\"key\":%" PRIu64 ",\"op\":\"%s\",\"version\":%" PRIu64, table, key,
       op, version);
  if (w->wave)
    addf(l, ",\"id\":\"w%u-%06" PRIu64 "\"", w->wave, w->seq);
  else
    addf(l, ",\"id\":\"snap-%06" PRIu64 "\"", w->seq);
  addf(l, ",\"at\":\"%s\"", at);
  l->row = strcmp(op, "delete") != 0;
  if (l->row) addf(l, ",\"row\":{");
}

static void col_name(gen_line *l, const char *name) {
  addf(l, "%s\"%s\":", l->first_col ? "" : ",", name);
  l->first_col = false;
}

void gen_col_str(gen_line *l, const char *name, const char *value) {
  col_name(l, name);
  if (value)
    add_string(l, value);
  else
    addf(l, "null");
}

void gen_col_int(gen_line *l, const char *name, int64_t value) {
  col_name(l, name);
  addf(l, "%" PRId64, value);
}

void gen_col_ref(gen_line *l, const char *name, uint64_t id) {
  col_name(l, name);
  if (id)
    addf(l, "%" PRIu64, id);
  else
    addf(l, "null");
}

void gen_col_bool(gen_line *l, const char *name, bool value) {
  col_name(l, name);
  addf(l, value ? "true" : "false");
}

/* Closes the row (if any) and the change. */
static int finish(gen_line *l) {
  addf(l, l->row ? "}}\n" : "}\n");
  return l->over ? -1 : 0;
}

/* Writes text and remembers it in the ring of recent lines. */
static int deliver(gen_writer *w, const char *text, size_t len) {
  if (w->out && fwrite(text, 1, len, w->out) != len) {
    w->failed = true;
    return -1;
  }
  w->written++;
  char *copy = malloc(len + 1);
  if (!copy) {
    w->failed = true;
    return -1;
  }
  memcpy(copy, text, len + 1);
  free(w->recent[w->recent_at]);
  w->recent[w->recent_at] = copy;
  w->recent_at = (w->recent_at + 1) % GEN_RECENT;
  return 0;
}

int gen_line_send(gen_writer *w, gen_line *l) {
  if (finish(l) != 0) {
    w->failed = true;
    return -1;
  }
  return deliver(w, l->s, l->n);
}

int gen_line_hold(gen_writer *w, gen_line *l) {
  if (finish(l) != 0) goto fail;
  if (w->nlate == w->late_cap) {
    size_t cap = w->late_cap ? w->late_cap * 2 : 64;
    char **grown = realloc(w->late, cap * sizeof *grown);
    if (!grown) goto fail;
    w->late = grown;
    w->late_cap = cap;
  }
  if (!(w->late[w->nlate] = malloc(l->n + 1))) goto fail;
  memcpy(w->late[w->nlate++], l->s, l->n + 1);
  return 0;
fail:
  w->failed = true;
  return -1;
}

int gen_writer_flush_late(gen_writer *w) {
  int rc = 0;
  for (size_t i = 0; i < w->nlate; i++) {
    if (rc == 0) rc = deliver(w, w->late[i], strlen(w->late[i]));
    free(w->late[i]);
  }
  w->nlate = 0;
  return rc;
}

/* Delivers a copy of the remembered line in slot i (the ring may overwrite it meanwhile). */
static int resend_slot(gen_writer *w, size_t i) {
  if (!w->recent[i]) return 1;
  size_t len = strlen(w->recent[i]);
  char *copy = malloc(len + 1);
  if (!copy) {
    w->failed = true;
    return -1;
  }
  memcpy(copy, w->recent[i], len + 1);
  int rc = deliver(w, copy, len);
  free(copy);
  return rc;
}

int gen_writer_resend(gen_writer *w, uint64_t r) {
  return resend_slot(w, (size_t)(r % GEN_RECENT));
}

int gen_writer_resend_last(gen_writer *w, size_t back) {
  if (back >= GEN_RECENT) return 1;
  return resend_slot(w, (w->recent_at + GEN_RECENT - 1 - back) % GEN_RECENT);
}
