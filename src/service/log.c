/*
 * Structured logs: one JSON object a line on stderr, so that a log shipper
 * can parse them without rules: {"ts", "level", "msg", "customer", ...}.
 * Lines are written with one write(2) each, so lines from the loop and the
 * worker threads never interleave. Callers never pass a token: the log only
 * ever names the variables that hold them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry/event.h"
#include "ferry/json.h"
#include "service/service.h"

#define LINE_MAX_BYTES (64 * 1024) /* longer lines are cut (the message) */

static svc_level min_level = SVC_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void svc_log_set_level(svc_level lv) {
  min_level = lv;
}

bool svc_log_parse_level(const char *name, svc_level *out) {
  for (int i = 0; i < 4; i++)
    if (strcmp(name, level_names[i]) == 0) {
      *out = (svc_level)i;
      return true;
    }
  return false;
}

static void write_all(const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(2, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= (size_t)w;
  }
}

/* Replaces every byte that does not start a valid UTF-8 sequence with '?',
 * in place, so that a message quoting outside input (or cut mid-character by
 * the buffer's size) still makes a JSON string. */
static void utf8_sanitize(char *s) {
  unsigned char *p = (unsigned char *)s;
  while (*p) {
    size_t n = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 0;
    size_t i = 1;
    while (n && i < n && (p[i] & 0xC0) == 0x80)
      i++;
    if (n == 0 || i < n) {
      *p++ = '?';
      continue;
    }
    p += n;
  }
}

/* When building the JSON fails (out of memory): a fixed line, still JSON. */
static void write_fallback(svc_level lv) {
  char line[128];
  int n =
      snprintf(line, sizeof line, "{\"level\":\"%s\",\"msg\":\"(log line lost: out of memory)\"}\n",
               level_names[lv]);
  write_all(line, (size_t)n);
}

void svc_log(svc_level lv, const char *customer, json_t *fields, const char *fmt, ...) {
  char msg[4096], ts[32];
  json_t *o = NULL;
  char *text = NULL;
  if (lv < min_level) goto done;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  utf8_sanitize(msg);
  ferry_time_format(ferry_time_now_us(), ts);
  o = json_object();
  if (!o || json_object_set_new(o, "ts", json_string(ts)) ||
      json_object_set_new(o, "level", json_string(level_names[lv])) ||
      json_object_set_new(o, "msg", json_string(msg)) ||
      (customer && json_object_set_new(o, "customer", json_string(customer))) ||
      (fields && json_object_update(o, fields))) {
    write_fallback(lv);
    goto done;
  }
  text = ferry_json_dump(o, 0);
  if (!text) {
    write_fallback(lv);
    goto done;
  }
  size_t n = strlen(text);
  if (n > LINE_MAX_BYTES) n = LINE_MAX_BYTES; /* still one line; a parser sees it cut */
  text[n] = '\n';
  write_all(text, n + 1);
done:
  free(text);
  json_decref(o);
  json_decref(fields);
}
