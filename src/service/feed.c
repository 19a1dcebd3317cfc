/*
 * Pull mode: a customer with `feed_url` is fed by long-polling that URL.
 * The protocol (docs/service.md has it for feed implementers):
 *
 *   GET {feed_url}{?|&}cursor={last cursor, URL-encoded; empty at first}&wait={seconds}
 *   200 + body       the changes after the cursor, NDJSON (or protobuf with
 *                    Content-Type: application/x-protobuf), and the header
 *                    X-Ferry-Cursor: the cursor after them (required)
 *   200 empty / 204  nothing new within `wait` seconds (X-Ferry-Cursor optional)
 *   anything else    an error: retried with exponential backoff (1 s .. 30 s)
 *
 * An answer is one batch: appended whole (ingest.c), and only once it is
 * durable is the new cursor written to the customer's meta family (with the
 * feed URL, so a new URL starts from the beginning). A crash in between
 * fetches the batch again, and the log drops it as duplicates (change ids).
 * An invalid batch is logged with its errors and retried with backoff: the
 * feed must fix it, nothing is skipped. A feed that answers empty at once
 * (no long-poll) is polled at most once a second.
 *
 * One curl multi handle serves every feed, driven by the loop's event_base
 * through curl's socket and timer callbacks (as curl's hiperfifo.c): while a
 * poll hangs, ferryd uses no CPU. One poll per feed at a time; the next poll
 * starts when the previous answer has been appended.
 */
#include <curl/curl.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cloud/curl_loop.h"
#include "service/service.h"

#define BACKOFF_BASE_MS 1000
#define BACKOFF_CAP_MS 30000
#define MIN_POLL_INTERVAL_US 1000000 /* after an answer that came back empty at once */
#define CONNECT_TIMEOUT_MS 10000
#define URL_MAX 8192
#define FEED_HOST_CONNS 8 /* connections kept per feed host */

struct svc_feeds {
  svc *s;
  curl_loop *loop; /* one multi handle for every feed, on the service's loop */
  unsigned busy;   /* answers being appended */
};

typedef enum feed_state {
  FEED_IDLE,
  FEED_POLLING,
  FEED_APPENDING,
  FEED_WAITING,
  FEED_STOPPED
} feed_state;

struct svc_feed {
  svc_cust *c;
  svc_feeds *fs;
  char *url;
  char *cursor;                  /* durable */
  char next[SVC_CURSOR_MAX + 1]; /* X-Ferry-Cursor of the answer */
  bool has_next;
  char ctype[128];
  CURL *easy;
  char errbuf[CURL_ERROR_SIZE];
  char *buf;
  size_t len, cap;
  bool over;
  feed_state state;
  struct event *timer;
  unsigned failures;
  int64_t poll_started_us;
  uint64_t polls, batches, errors;
  char last_error[256];
  bool orphan; /* unconfigured while appending: freed when the append ends */
};

static void poll_start(svc_feed *f);
static void poll_done(svc_feed *f, CURLcode rc);

/* --------------------------------------------------- curl on the loop --- */

/* A poll ended: the transfer is out of the multi handle already. */
static void on_done(void *arg, CURL *easy, CURLcode rc) {
  svc_feed *f = NULL;
  (void)arg;
  curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&f);
  if (f) poll_done(f, rc);
}

ferry_status svc_feeds_create(svc *s, ferry_error *err) {
  svc_feeds *fs = calloc(1, sizeof *fs);
  if (!fs) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  s->feeds = fs;
  fs->s = s;
  /* the cloud module's curl-on-libevent driver; a feed host gets a few connections */
  return curl_loop_create(&fs->loop, s->base, FEED_HOST_CONNS, on_done, fs, err);
}

void svc_feeds_free(svc *s) {
  svc_feeds *fs = s->feeds;
  if (!fs) return;
  curl_loop_destroy(fs->loop);
  free(fs);
  s->feeds = NULL;
}

unsigned svc_feeds_busy(const svc *s) {
  return s->feeds ? s->feeds->busy : 0;
}

/* ------------------------------------------------------------ answers --- */

static size_t on_body(char *p, size_t size, size_t n, void *arg) {
  svc_feed *f = arg;
  size_t add = size * n, max = (size_t)f->c->s->conf->cfg->service.max_batch_bytes;
  if (f->len + add > max) {
    f->over = true;
    return 0; /* aborts the transfer */
  }
  if (f->len + add > f->cap) {
    size_t cap = f->cap ? f->cap : 64 * 1024;
    while (cap < f->len + add)
      cap *= 2;
    if (cap > max) cap = max;
    char *b = realloc(f->buf, cap);
    if (!b) return 0;
    f->buf = b;
    f->cap = cap;
  }
  memcpy(f->buf + f->len, p, add);
  f->len += add;
  return add;
}

/* Copies a header's value (trimmed) into out; false when too long or not
 * printable ASCII (a cursor goes into URLs, JSON and logs). */
static bool header_value(const char *line, size_t n, size_t name_len, char *out, size_t cap) {
  const char *v = line + name_len;
  size_t vl = n - name_len;
  while (vl && (*v == ' ' || *v == '\t'))
    v++, vl--;
  while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
    vl--;
  if (vl >= cap) return false;
  for (size_t i = 0; i < vl; i++)
    if (v[i] < 0x20 || v[i] > 0x7e) return false;
  memcpy(out, v, vl);
  out[vl] = '\0';
  return true;
}

static size_t on_header(char *line, size_t size, size_t n, void *arg) {
  svc_feed *f = arg;
  size_t len = size * n;
  static const char cursor[] = "X-Ferry-Cursor:", ctype[] = "Content-Type:";
  if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) { /* a new answer (after a 100 Continue) */
    f->has_next = false;
    f->ctype[0] = '\0';
  } else if (len > sizeof cursor - 1 && strncasecmp(line, cursor, sizeof cursor - 1) == 0) {
    f->has_next = header_value(line, len, sizeof cursor - 1, f->next, sizeof f->next);
  } else if (len > sizeof ctype - 1 && strncasecmp(line, ctype, sizeof ctype - 1) == 0) {
    if (!header_value(line, len, sizeof ctype - 1, f->ctype, sizeof f->ctype)) f->ctype[0] = '\0';
  }
  return len;
}

/* --------------------------------------------------------------- cursor --- */

/* The cursor stored for this feed URL, or "" (malloc'd; NULL when out of memory). */
static char *load_cursor(svc *s, const svc_cust *c, const char *url) {
  char *val = NULL;
  size_t vlen = 0;
  ferry_error err;
  ferry_status st = ferry_kv_get(s->store, FERRY_CF_META, c->id, SVC_META_FEED_CURSOR,
                                 strlen(SVC_META_FEED_CURSOR), &val, &vlen, &err);
  if (st && st != FERRY_ENOTFOUND)
    svc_log(SVC_ERROR, c->id, NULL, "cannot read the feed cursor, starting over: %s", err.msg);
  size_t ul = strlen(url);
  char *cur = NULL;
  if (!st && vlen > ul && memcmp(val, url, ul) == 0 && val[ul] == '\n')
    cur = strdup(val + ul + 1);
  else
    cur = strdup("");
  free(val);
  return cur;
}

/* Writes "URL\nCURSOR" to meta: after the batch it follows is durable. */
static ferry_status save_cursor(svc_feed *f, ferry_error *err) {
  size_t ul = strlen(f->url), cl = strlen(f->next);
  char *v = malloc(ul + 1 + cl);
  ferry_wbatch *b = ferry_wbatch_create(f->c->s->store, f->c->id);
  ferry_status st = FERRY_OK;
  if (!v || !b) {
    st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
    goto done;
  }
  memcpy(v, f->url, ul);
  v[ul] = '\n';
  memcpy(v + ul + 1, f->next, cl);
  ferry_wbatch_put(b, FERRY_CF_META, SVC_META_FEED_CURSOR, strlen(SVC_META_FEED_CURSOR), v,
                   ul + 1 + cl);
  /* unsynced: losing it only fetches the batch again, which dedups */
  if ((st = ferry_wbatch_commit(b, false, err))) goto done;
  char *cur = strdup(f->next);
  if (!cur) {
    st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
    goto done;
  }
  free(f->cursor);
  f->cursor = cur;
done:
  ferry_wbatch_destroy(b);
  free(v);
  return st;
}

/* ---------------------------------------------------------------- polls --- */

static void on_feed_timer(evutil_socket_t fd, short what, void *arg) {
  svc_feed *f = arg;
  (void)fd;
  (void)what;
  if (f->state == FEED_WAITING) poll_start(f);
}

static void wait_then_poll(svc_feed *f, long ms) {
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  if (f->c->s->stopping) {
    f->state = FEED_STOPPED;
    return;
  }
  f->state = FEED_WAITING;
  evtimer_add(f->timer, &tv);
}

static void feed_fail(svc_feed *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void feed_fail(svc_feed *f, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(f->last_error, sizeof f->last_error, fmt, ap);
  va_end(ap);
  f->errors++;
  f->c->s->metrics.feed_errors++;
  unsigned shift = f->failures < 6 ? f->failures : 5;
  f->failures++;
  long ms = (long)BACKOFF_BASE_MS << shift;
  if (ms > BACKOFF_CAP_MS) ms = BACKOFF_CAP_MS;
  ms = ms / 2 + random() % (ms / 2 + 1);
  svc_log(SVC_WARN, f->c->id, json_pack("{s:i}", "retry_in_ms", (int)ms), "feed: %s",
          f->last_error);
  wait_then_poll(f, ms);
}

static ferry_status poll_url(svc_feed *f, char *out, size_t cap) {
  char *esc = curl_easy_escape(f->easy, f->cursor, 0);
  if (!esc) return FERRY_ENOMEM;
  int n = snprintf(out, cap, "%s%scursor=%s&wait=%d", f->url, strchr(f->url, '?') ? "&" : "?", esc,
                   f->c->s->opts.feed_wait_s);
  curl_free(esc);
  return n > 0 && (size_t)n < cap ? FERRY_OK : FERRY_ETOOBIG;
}

static void poll_start(svc_feed *f) {
  svc *s = f->c->s;
  char url[URL_MAX];
  if (s->stopping) {
    f->state = FEED_STOPPED;
    return;
  }
  if (poll_url(f, url, sizeof url) != FERRY_OK) {
    feed_fail(f, "cannot build the poll URL (too long, or out of memory)");
    return;
  }
  f->len = 0;
  f->over = f->has_next = false;
  f->ctype[0] = f->errbuf[0] = '\0';
  curl_easy_setopt(f->easy, CURLOPT_URL, url);
  curl_easy_setopt(f->easy, CURLOPT_TIMEOUT_MS, (long)(s->opts.feed_wait_s + 15) * 1000L);
  f->poll_started_us = svc_now_us();
  ferry_error aerr;
  if (curl_loop_add(f->fs->loop, f->easy, &aerr) != FERRY_OK) {
    feed_fail(f, "cannot start a poll");
    return;
  }
  f->state = FEED_POLLING;
}

static void feed_ingested(void *arg, const svc_ingest_result *r) {
  svc_feed *f = arg;
  svc *s = f->c->s;
  ferry_error err;
  f->fs->busy--;
  if (r->st == FERRY_OK) {
    f->batches++;
    s->metrics.feed_batches++;
    f->failures = 0;
    if (save_cursor(f, &err))
      svc_log(SVC_ERROR, f->c->id, NULL, "feed: cannot save the cursor: %s", err.msg);
  }
  if (f->orphan) {
    svc_feed_free(f);
  } else if (r->st == FERRY_EINVAL && r->batch && ferry_batch_error_count(r->batch)) {
    const ferry_change_error *e = ferry_batch_errors(r->batch);
    feed_fail(f, "invalid batch, nothing appended (%llu invalid; first: line %llu: %s%s%s)",
              (unsigned long long)ferry_batch_invalid_total(r->batch), (unsigned long long)e->line,
              e->field, e->field[0] ? ": " : "", e->reason);
  } else if (r->st) {
    feed_fail(f, "cannot append: %s", r->err->msg);
  } else {
    poll_start(f);
  }
  svc_check_stopped(s);
}

/* An empty answer: nothing new. Keep a cursor the feed moved anyway. */
static void empty_answer(svc_feed *f) {
  ferry_error err;
  f->failures = 0;
  if (f->has_next && strcmp(f->next, f->cursor) != 0 && save_cursor(f, &err))
    svc_log(SVC_ERROR, f->c->id, NULL, "feed: cannot save the cursor: %s", err.msg);
  if (svc_now_us() - f->poll_started_us < MIN_POLL_INTERVAL_US)
    wait_then_poll(f, MIN_POLL_INTERVAL_US / 1000);
  else
    poll_start(f);
}

static void poll_done(svc_feed *f, CURLcode rc) {
  svc *s = f->c->s;
  long code = 0;
  f->state = FEED_IDLE;
  curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &code);
  f->polls++;
  s->metrics.feed_polls++;
  if (s->stopping) {
    f->state = FEED_STOPPED;
  } else if (f->over) {
    feed_fail(f, "answer over service.max_batch_bytes");
  } else if (rc != CURLE_OK) {
    feed_fail(f, "%s", f->errbuf[0] ? f->errbuf : curl_easy_strerror(rc));
  } else if (code == 204 || (code == 200 && f->len == 0)) {
    empty_answer(f);
  } else if (code != 200) {
    feed_fail(f, "the feed answered HTTP %ld", code);
  } else if (!f->has_next) {
    feed_fail(f,
              "the feed answered changes without an X-Ferry-Cursor header (or one over %d bytes)",
              SVC_CURSOR_MAX);
  } else {
    ferry_format fmt = strncasecmp(f->ctype, "application/x-protobuf", 22) == 0
                           ? FERRY_FORMAT_PROTOBUF
                           : FERRY_FORMAT_NDJSON;
    f->state = FEED_APPENDING;
    f->fs->busy++;
    if (svc_ingest_start(s, f->c, fmt, f->buf, f->len, feed_ingested, f) != FERRY_OK) {
      f->fs->busy--;
      feed_fail(f, "out of memory");
    }
  }
}

/* --------------------------------------------------------- life cycle --- */

static ferry_status easy_setup(svc_feed *f) {
  if (!(f->easy = curl_easy_init())) return FERRY_ENOMEM;
  curl_easy_setopt(f->easy, CURLOPT_PRIVATE, (char *)f);
  curl_easy_setopt(f->easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(f->easy, CURLOPT_WRITEDATA, f);
  curl_easy_setopt(f->easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(f->easy, CURLOPT_HEADERDATA, f);
  curl_easy_setopt(f->easy, CURLOPT_ERRORBUFFER, f->errbuf);
  curl_easy_setopt(f->easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(f->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
  curl_easy_setopt(f->easy, CURLOPT_PROTOCOLS_STR, "http,https");
  return FERRY_OK;
}

static svc_feed *feed_new(svc_cust *c, const char *url) {
  svc *s = c->s;
  svc_feed *f = calloc(1, sizeof *f);
  if (!f) return NULL;
  f->c = c;
  f->fs = s->feeds;
  if (!(f->url = strdup(url)) || !(f->cursor = load_cursor(s, c, url)) || easy_setup(f) ||
      !(f->timer = evtimer_new(s->base, on_feed_timer, f))) {
    svc_feed_free(f);
    return NULL;
  }
  return f;
}

void svc_feed_free(svc_feed *f) {
  if (!f) return;
  if (f->state == FEED_POLLING && f->easy) curl_loop_remove(f->fs->loop, f->easy);
  if (f->easy) curl_easy_cleanup(f->easy);
  if (f->timer) event_free(f->timer);
  free(f->url);
  free(f->cursor);
  free(f->buf);
  free(f);
}

/* Takes f away from its customer: freed now, or when its append ends. */
static void feed_drop(svc_feed *f) {
  if (f->state == FEED_APPENDING) {
    f->orphan = true;
    return;
  }
  svc_feed_free(f);
}

void svc_feed_configure(svc_cust *c, const char *feed_url) {
  svc *s = c->s;
  if (c->feed && feed_url && strcmp(c->feed->url, feed_url) == 0) return;
  if (c->feed) {
    svc_log(SVC_INFO, c->id, NULL, "feed stopped");
    feed_drop(c->feed);
    c->feed = NULL;
  }
  if (!feed_url || s->stopping) return;
  if (!(c->feed = feed_new(c, feed_url))) {
    svc_log(SVC_ERROR, c->id, NULL, "cannot start the feed: out of memory");
    return;
  }
  svc_log(SVC_INFO, c->id, json_pack("{s:s}", "cursor", c->feed->cursor), "feed started");
  poll_start(c->feed);
}

void svc_feeds_stop(svc *s) {
  for (size_t i = 0; i < s->custs.count; i++) {
    svc_cust *c = s->custs.entries[i].val;
    svc_feed *f = c ? c->feed : NULL;
    if (!f) continue;
    if (f->state == FEED_POLLING) curl_loop_remove(s->feeds->loop, f->easy);
    if (f->state == FEED_WAITING) evtimer_del(f->timer);
    if (f->state != FEED_APPENDING) f->state = FEED_STOPPED;
  }
}

json_t *svc_feed_status(const svc_cust *c) {
  static const char *const names[] = {"idle", "polling", "appending", "waiting", "stopped"};
  const svc_feed *f = c->feed;
  if (!f) return NULL;
  json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I}", "state", names[f->state], "cursor", f->cursor,
                        "polls", (json_int_t)f->polls, "batches", (json_int_t)f->batches, "errors",
                        (json_int_t)f->errors);
  if (o && f->last_error[0]) json_object_set_new(o, "last_error", json_string(f->last_error));
  return o;
}
