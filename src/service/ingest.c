/*
 * Ingest: one batch (an HTTP request body or a feed answer) on its way into
 * a customer's log, whole or not at all (SPEC §1).
 *
 * The batch is decoded and validated (ferry_batch_decode lists every invalid
 * change), then handed to ferry_store_append_async. The store answers on its
 * commit thread once the write-ahead log is synced; that callback only posts
 * the job to the loop (worker.c's completion queue and single wake-up), where
 * the answer is sent. So the loop never waits for the disk, and concurrent
 * requests share one WAL sync (the store's group commit).
 *
 * Small bodies are decoded on the loop (a few microseconds a change, and one
 * thread hop fewer); bodies over DECODE_ON_LOOP_MAX are decoded on a worker
 * so that a 64 MiB batch does not stall everyone else's requests.
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "service/service.h"

#define DECODE_ON_LOOP_MAX (256u * 1024)
#define ERRORS_LISTED 1000

typedef struct ingest_job {
  svc_job job;
  svc *s;
  svc_cust *c;
  ferry_format fmt;
  const char *buf;
  size_t len;
  ferry_batch *batch;
  ferry_status st;
  ferry_error err;
  ferry_append_result res;
  svc_ingest_fn fn;
  void *arg;
} ingest_job;

static void append(ingest_job *j);

/* The end of a batch's way, on the loop: counters, schedule, answer. */
static void finish(ingest_job *j) {
  svc *s = j->s;
  svc_cust *c = j->c;
  if (j->st == FERRY_OK) {
    c->appended += j->res.appended;
    c->duplicates += j->res.duplicates;
    if (j->res.head_seq > c->head_seq) c->head_seq = j->res.head_seq;
    s->metrics.changes += j->res.appended;
    s->metrics.duplicates += j->res.duplicates;
    if (j->res.appended) svc_sched_kick(c);
  } else {
    s->metrics.ingest_rejected++;
  }
  svc_ingest_result r = {j->st, &j->err, j->batch, j->res};
  j->fn(j->arg, &r);
  ferry_batch_free(j->batch);
  free(j);
  s->pending_ingests--;
  svc_check_stopped(s);
}

static void decode(ingest_job *j) {
  ferry_decode_opts o = {j->c->id, false, ERRORS_LISTED};
  ferry_error_clear(&j->err);
  j->st = ferry_batch_decode(j->fmt, j->buf, j->len, &o, &j->batch, &j->err);
}

static void decode_work(svc_job *jb) {
  decode((ingest_job *)jb);
}

static void decoded_done(svc_job *jb) {
  ingest_job *j = (ingest_job *)jb;
  if (j->st)
    finish(j);
  else
    append(j);
}

static void appended_done(svc_job *jb) {
  finish((ingest_job *)jb);
}

/* The store's commit thread: copy the outcome, hand the job to the loop. */
static void on_appended(void *arg, ferry_status st, const ferry_append_result *res,
                        const ferry_error *err) {
  ingest_job *j = arg;
  j->st = st;
  if (res) j->res = *res;
  if (err)
    j->err = *err;
  else if (st)
    ferry_error_set(&j->err, st, "%s", ferry_strerror(st));
  j->job.work = NULL;
  j->job.done = appended_done;
  svc_workers_post(j->s->workers, &j->job);
}

static void append(ingest_job *j) {
  ferry_status st = ferry_store_append_async(j->s->store, j->c->id, ferry_batch_changes(j->batch),
                                             ferry_batch_count(j->batch), on_appended, j);
  if (st) {
    j->st = ferry_error_set(&j->err, st, "cannot queue the batch: %s", ferry_strerror(st));
    finish(j);
  }
}

ferry_status svc_ingest_start(svc *s, svc_cust *c, ferry_format fmt, const char *buf, size_t len,
                              svc_ingest_fn fn, void *arg) {
  ingest_job *j = calloc(1, sizeof *j);
  if (!j) return FERRY_ENOMEM;
  j->s = s;
  j->c = c;
  j->fmt = fmt;
  j->buf = buf;
  j->len = len;
  j->fn = fn;
  j->arg = arg;
  s->pending_ingests++;
  s->metrics.ingest_requests++;
  if (len > DECODE_ON_LOOP_MAX) {
    j->job.work = decode_work;
    j->job.done = decoded_done;
    svc_workers_submit(s->workers, &j->job);
    return FERRY_OK;
  }
  decode(j);
  decoded_done(&j->job);
  return FERRY_OK;
}

/* ------------------------------------------------------------------ HTTP --- */

typedef struct http_ingest {
  svc *s;
  struct evhttp_request *req;
  int64_t started_us;
} http_ingest;

/* {"error", "invalid", "errors": [{"line","field","reason"}...], "truncated"} */
static json_t *errors_json(const ferry_batch *b) {
  const ferry_change_error *e = ferry_batch_errors(b);
  size_t n = ferry_batch_error_count(b);
  uint64_t total = ferry_batch_invalid_total(b);
  json_t *list = json_array();
  for (size_t i = 0; list && i < n; i++) {
    json_t *o = json_pack("{s:I, s:s, s:s}", "line", (json_int_t)e[i].line, "field", e[i].field,
                          "reason", e[i].reason);
    if (!o || json_array_append_new(list, o)) {
      json_decref(list);
      return NULL;
    }
  }
  char msg[128];
  snprintf(msg, sizeof msg, "%llu invalid change(s); nothing appended", (unsigned long long)total);
  return json_pack("{s:s, s:I, s:o, s:b}", "error", msg, "invalid", (json_int_t)total, "errors",
                   list, "truncated", total > n);
}

static void http_ingested(void *arg, const svc_ingest_result *r) {
  http_ingest *h = arg;
  svc *s = h->s;
  if (r->st == FERRY_OK) {
    svc_reply_json(s, h->req, 200,
                   json_pack("{s:I, s:I, s:I}", "appended", (json_int_t)r->res.appended,
                             "duplicates", (json_int_t)r->res.duplicates, "head_seq",
                             (json_int_t)r->res.head_seq));
  } else if (r->st == FERRY_EINVAL && r->batch) {
    json_t *o = errors_json(r->batch);
    if (o)
      svc_reply_json(s, h->req, 400, o);
    else
      svc_reply_error(s, h->req, 503, "out of memory listing the errors");
  } else {
    svc_reply_error(s, h->req, svc_http_code(r->st), "%s",
                    r->err->msg[0] ? r->err->msg : ferry_strerror(r->st));
  }
  svc_hist_observe(&s->metrics.ingest_latency, (double)(svc_now_us() - h->started_us) / 1e6);
  free(h);
}

/* The format a Content-Type names, or -1. Parameters (charset) are ignored. */
static int content_format(const char *ct) {
  if (!ct) return -1;
  while (*ct == ' ' || *ct == '\t')
    ct++;
  size_t n = strcspn(ct, "; \t");
  if (n == strlen("application/x-ndjson") && strncasecmp(ct, "application/x-ndjson", n) == 0)
    return FERRY_FORMAT_NDJSON;
  if (n == strlen("application/x-protobuf") && strncasecmp(ct, "application/x-protobuf", n) == 0)
    return FERRY_FORMAT_PROTOBUF;
  return -1;
}

void svc_ingest_http(svc *s, svc_cust *c, struct evhttp_request *req) {
  const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
  int fmt = content_format(ct);
  if (fmt < 0) {
    svc_reply_error(s, req, 415,
                    "Content-Type must be application/x-ndjson or application/x-protobuf");
    return;
  }
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t len = evbuffer_get_length(in);
  const char *buf = len ? (const char *)evbuffer_pullup(in, -1) : "";
  http_ingest *h = buf ? malloc(sizeof *h) : NULL;
  if (!h) {
    svc_reply_error(s, req, 503, "out of memory");
    return;
  }
  h->s = s;
  h->req = req;
  h->started_us = svc_now_us();
  /* the body stays in the request's buffer, which lives until the answer */
  if (svc_ingest_start(s, c, (ferry_format)fmt, buf, len, http_ingested, h) != FERRY_OK) {
    free(h);
    svc_reply_error(s, req, 503, "out of memory");
  }
}
