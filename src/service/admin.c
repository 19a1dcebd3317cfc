/*
 * The admin routes: status and history (as `ferry status --json` and
 * `ferry history --json`), rewind / resume / replay / retry-failed (as the
 * CLI, queued through the scheduler so they never overlap a run), backups
 * of the store, and /healthz.
 *
 * Everything that reads or writes RocksDB runs on a worker; the loop only
 * parses the request and sends the answer. Status and history only read, so
 * they open their own projector (allowing a changed mapping, as the CLI's
 * read-only commands do) and may run beside the customer's own run.
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/event.h"
#include "ferry/json.h"
#include "service/service.h"

#define HISTORY_MAX_BYTES (256u * 1024 * 1024) /* one answer; past it, ask with a filter or limit  \
                                                */
#define OP_BODY_MAX 4096

/* A read-only job: status or history of one customer. */
typedef struct read_job {
  svc_job job;
  svc *s;
  svc_cust *c;
  svc_conf *conf;
  ferry_store *store;
  struct evhttp_request *req;
  bool history;
  char *entity, *row; /* history filters */
  uint64_t limit, n;
  bool truncated;
  json_t *status;       /* status: the CLI's object */
  struct evbuffer *out; /* history: NDJSON */
  ferry_status st;
  ferry_error err;
} read_job;

static void read_job_free(read_job *j) {
  svc_conf_unref(j->conf);
  free(j->entity);
  free(j->row);
  json_decref(j->status);
  if (j->out) evbuffer_free(j->out);
  free(j);
}

static ferry_status open_reader(read_job *j, ferry_projector **p) {
  const ferry_config *cfg = j->conf->cfg;
  ferry_projector_opts o = {cfg->cloud.id_field, cfg->cloud.external_key_field, 0};
  return ferry_projector_open(p, j->store, j->conf->map, j->c->id, &o, true, &j->err);
}

/* ------------------------------------------------------------- status --- */

static int add_failed(void *arg, const char *entity, const char *key, int status,
                      const char *error) {
  json_t *o = json_pack("{s:s, s:s, s:i, s:s}", "entity", entity, "key", key, "status", status,
                        "error", error ? error : "");
  return o ? json_array_append_new(arg, o) != 0 : 1;
}

/* The object `ferry status CUSTOMER --json` prints. */
static ferry_status status_object(read_job *j, ferry_projector *p, json_t **out) {
  ferry_projection_info i;
  ferry_status st = ferry_projector_info(p, &i, &j->err);
  if (st) return st;
  char when[32] = "";
  if (i.last_sync_us) ferry_time_format(i.last_sync_us, when);
  json_t *failed = json_array();
  if (!failed) return ferry_error_set(&j->err, FERRY_ENOMEM, "out of memory");
  st = ferry_projector_failed(p, add_failed, failed, &j->err);
  json_t *o =
      st ? NULL
         : json_pack("{s:s, s:I, s:I, s:b, s:I, s:I, s:b, s:o, s:s, s:O}", "customer", j->c->id,
                     "head_seq", (json_int_t)i.head_seq, "projected_seq", (json_int_t)i.folded_seq,
                     "held", i.held, "pending", (json_int_t)i.dirty, "failed", (json_int_t)i.failed,
                     "mapping_changed", i.mapping_changed, "last_sync",
                     i.last_sync_us ? json_string(when) : json_null(), "last_sync_result",
                     i.last_sync_result, "failed_entities", failed);
  json_decref(failed);
  if (st) return st;
  if (!o) return ferry_error_set(&j->err, FERRY_ENOMEM, "out of memory");
  if (i.held) json_object_set_new(o, "hold_seq", json_integer((json_int_t)i.hold_seq));
  json_object_set_new(o, "restored", json_boolean(i.restored));
  *out = o;
  return FERRY_OK;
}

/* ------------------------------------------------------------- history --- */

static int add_record(void *arg, json_t *record) {
  read_job *j = arg;
  if (j->limit && j->n >= j->limit) {
    j->truncated = true;
    return 1;
  }
  char *s = ferry_json_dump(record, 0);
  if (!s || evbuffer_get_length(j->out) + strlen(s) + 1 > HISTORY_MAX_BYTES ||
      evbuffer_add(j->out, s, strlen(s)) || evbuffer_add(j->out, "\n", 1)) {
    j->truncated = true;
    free(s);
    return 1;
  }
  free(s);
  j->n++;
  return 0;
}

static void read_work(svc_job *jb) {
  read_job *j = (read_job *)jb;
  ferry_projector *p = NULL;
  ferry_error_clear(&j->err);
  j->st = open_reader(j, &p);
  if (!j->st && j->history) {
    if (!(j->out = evbuffer_new()))
      j->st = ferry_error_set(&j->err, FERRY_ENOMEM, "out of memory");
    else
      j->st = ferry_projector_history(p, j->entity, j->row, add_record, j, &j->err);
  } else if (!j->st) {
    j->st = status_object(j, p, &j->status);
  }
  ferry_projector_close(p);
}

/* What only the service knows: its state machine, backoff, feed. */
static json_t *service_fields(svc *s, const svc_cust *c) {
  json_t *o = json_pack("{s:s, s:b, s:I, s:I, s:I, s:I}", "state", svc_cust_state_name(c),
                        "configured", c->configured, "runs", (json_int_t)c->runs, "run_failures",
                        (json_int_t)c->run_failures, "appended", (json_int_t)c->appended,
                        "duplicates", (json_int_t)c->duplicates);
  if (!o) return NULL;
  if (c->state == SVC_RUNNING) json_object_set_new(o, "rerun", json_boolean(c->rerun));
  if (c->last_error[0]) json_object_set_new(o, "last_error", json_string(c->last_error));
  if (c->in_backoff) {
    char when[32];
    ferry_time_format(c->backoff_until_us, when);
    json_object_set_new(o, "retry_at", json_string(when));
  }
  if (c->blocked && c->blocked_conf == s->conf)
    json_object_set_new(o, "blocked", json_string(c->blocked_msg));
  json_t *feed = svc_feed_status(c);
  if (feed) json_object_set_new(o, "feed", feed);
  return o;
}

static void read_done(svc_job *jb) {
  read_job *j = (read_job *)jb;
  svc *s = j->s;
  if (j->st) {
    svc_reply_error(s, j->req, svc_http_code(j->st), "%s", j->err.msg);
  } else if (j->history) {
    if (j->truncated)
      evhttp_add_header(evhttp_request_get_output_headers(j->req), "X-Ferry-Truncated", "true");
    svc_reply_buf(s, j->req, 200, "application/x-ndjson", j->out);
    j->out = NULL;
  } else {
    json_t *svc_part = service_fields(s, j->c);
    if (svc_part) json_object_set_new(j->status, "service", svc_part);
    svc_reply_json(s, j->req, 200, j->status);
    j->status = NULL;
  }
  read_job_free(j);
  svc_check_stopped(s);
}

static read_job *read_job_new(svc *s, svc_cust *c, struct evhttp_request *req, bool history) {
  read_job *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  j->job.work = read_work;
  j->job.done = read_done;
  j->s = s;
  j->c = c;
  j->conf = svc_conf_ref(s->conf);
  j->store = s->store;
  j->req = req;
  j->history = history;
  return j;
}

void svc_admin_status(svc *s, svc_cust *c, struct evhttp_request *req) {
  read_job *j = read_job_new(s, c, req, false);
  if (!j) {
    svc_reply_error(s, req, 503, "out of memory");
    return;
  }
  svc_workers_submit(s->workers, &j->job);
}

/* ?entity=E/KEY&row=TABLE/KEY&limit=N */
static bool history_query(read_job *j, const char *query) {
  struct evkeyvalq q;
  bool ok = true;
  q.tqh_first = NULL;
  q.tqh_last = &q.tqh_first;
  if (query && evhttp_parse_query_str(query, &q) != 0) return false;
  for (struct evkeyval *kv = q.tqh_first; kv && ok; kv = kv->next.tqe_next) {
    if (strcmp(kv->key, "entity") == 0)
      ok = !j->entity && (j->entity = strdup(kv->value));
    else if (strcmp(kv->key, "row") == 0)
      ok = !j->row && (j->row = strdup(kv->value));
    else if (strcmp(kv->key, "limit") == 0) {
      char *end = NULL;
      j->limit = strtoull(kv->value, &end, 10);
      ok = end && !*end && kv->value[0] && kv->value[0] != '-';
    } else
      ok = false;
  }
  evhttp_clear_headers(&q);
  return ok;
}

void svc_admin_history(svc *s, svc_cust *c, struct evhttp_request *req) {
  read_job *j = read_job_new(s, c, req, true);
  if (!j) {
    svc_reply_error(s, req, 503, "out of memory");
    return;
  }
  const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
  if (!history_query(j, u ? evhttp_uri_get_query(u) : NULL)) {
    read_job_free(j);
    svc_reply_error(s, req, 400, "history takes entity=E/KEY, row=TABLE/KEY and limit=N");
    return;
  }
  svc_workers_submit(s->workers, &j->job);
}

/* ---------------------------------------------------------- operations --- */

const char *svc_op_name(svc_op_kind kind) {
  switch (kind) {
  case SVC_OP_REWIND: return "rewind";
  case SVC_OP_RESUME: return "resume";
  case SVC_OP_REPLAY: return "replay";
  case SVC_OP_RETRY: return "retry-failed";
  }
  return "?";
}

/* rewind's body: {"to_seq": N, "hold": bool}; the others take none (or an
 * empty object). */
static bool op_body(svc_op *op, struct evhttp_request *req, char *why, size_t whycap) {
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t len = evbuffer_get_length(in);
  if (len == 0 && op->kind != SVC_OP_REWIND) return true;
  if (len > OP_BODY_MAX)
    return snprintf(why, whycap, "the body is over %d bytes", OP_BODY_MAX), false;
  json_error_t je;
  json_t *o = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, &je);
  json_t *to = json_object_get(o, "to_seq"), *hold = json_object_get(o, "hold");
  bool ok = json_is_object(o);
  size_t known = (to != NULL) + (hold != NULL);
  if (!ok)
    snprintf(why, whycap, "the body must be a JSON object");
  else if (json_object_size(o) != known || (op->kind != SVC_OP_REWIND && known))
    ok = false, snprintf(why, whycap, "unknown field (rewind takes to_seq and hold; %s none)",
                         svc_op_name(op->kind));
  else if (op->kind == SVC_OP_REWIND && (!json_is_integer(to) || json_integer_value(to) < 0))
    ok = false, snprintf(why, whycap, "to_seq must be a non-negative integer");
  else if (hold && !json_is_boolean(hold))
    ok = false, snprintf(why, whycap, "hold must be true or false");
  if (ok && to) op->to_seq = (uint64_t)json_integer_value(to);
  if (ok && hold) op->hold = json_is_true(hold);
  json_decref(o);
  return ok;
}

void svc_admin_op(svc *s, svc_cust *c, svc_op_kind kind, struct evhttp_request *req) {
  char why[256];
  svc_op *op = calloc(1, sizeof *op);
  if (!op) {
    svc_reply_error(s, req, 503, "out of memory");
    return;
  }
  op->kind = kind;
  op->req = req;
  op->started_us = svc_now_us();
  if (!op_body(op, req, why, sizeof why)) {
    free(op);
    svc_reply_error(s, req, 400, "%s", why);
    return;
  }
  svc_sched_op(c, op);
}

void svc_admin_op_reply(svc_op *op) {
  svc *s = op->c->s;
  const ferry_projection_info *i = &op->info;
  if (op->st) {
    svc_reply_error(s, op->req, svc_http_code(op->st), "%s", op->err.msg);
  } else {
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:b, s:I, s:s}", "customer", op->c->id, "done",
                          svc_op_name(op->kind), "head_seq", (json_int_t)i->head_seq,
                          "projected_seq", (json_int_t)i->folded_seq, "held", i->held, "pending",
                          (json_int_t)i->dirty, "mapping_hash", i->mapping_hash);
    if (o && i->held) json_object_set_new(o, "hold_seq", json_integer((json_int_t)i->hold_seq));
    if (o && op->kind == SVC_OP_RETRY)
      json_object_set_new(o, "retried", json_integer((json_int_t)op->retried));
    svc_reply_json(s, op->req, 200, o);
  }
  svc_conf_unref(op->conf);
  free(op);
}

/* --------------------------------------------------------------- backup --- */

/* A backup of the whole store into a new directory, on a worker: the
 * checkpoint flushes the memtables and links the table files, which takes a
 * moment the loop must not wait for. */
typedef struct backup_job {
  svc_job job;
  svc *s;
  struct evhttp_request *req;
  char *dir;
  int64_t started_us;
  ferry_status st;
  ferry_error err;
} backup_job;

static void backup_work(svc_job *jb) {
  backup_job *j = (backup_job *)jb;
  ferry_error_clear(&j->err);
  j->st = ferry_backup(j->s->store, j->dir, &j->err);
}

static void backup_done(svc_job *jb) {
  backup_job *j = (backup_job *)jb;
  svc *s = j->s;
  double ms = (double)(svc_now_us() - j->started_us) / 1e3;
  if (j->st) {
    svc_log(SVC_ERROR, NULL, NULL, "backup to %s failed: %s", j->dir, j->err.msg);
    svc_reply_error(s, j->req, svc_http_code(j->st), "%s", j->err.msg);
  } else {
    svc_log(SVC_INFO, NULL, json_pack("{s:s, s:f}", "dir", j->dir, "ms", ms), "backed up");
    svc_reply_json(s, j->req, 200, json_pack("{s:s, s:f}", "dir", j->dir, "ms", ms));
  }
  free(j->dir);
  free(j);
  svc_check_stopped(s);
}

/* The body: {"dir": "/absolute/path"}; the directory must not exist yet. */
static char *backup_dir(struct evhttp_request *req, char *why, size_t whycap) {
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t len = evbuffer_get_length(in);
  json_error_t je;
  json_t *o =
      len <= OP_BODY_MAX ? json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, &je) : NULL;
  const char *dir = json_string_value(json_object_get(o, "dir"));
  char *out = NULL;
  if (!json_is_object(o) || json_object_size(o) != 1 || !dir)
    snprintf(why, whycap, "the body must be {\"dir\": \"/absolute/path\"}");
  else if (dir[0] != '/')
    snprintf(why, whycap, "dir must be an absolute path");
  else if (!(out = strdup(dir)))
    snprintf(why, whycap, "out of memory");
  json_decref(o);
  return out;
}

void svc_admin_backup(svc *s, struct evhttp_request *req) {
  char why[128];
  backup_job *j = calloc(1, sizeof *j);
  if (!j) {
    svc_reply_error(s, req, 503, "out of memory");
    return;
  }
  if (!(j->dir = backup_dir(req, why, sizeof why))) {
    free(j);
    svc_reply_error(s, req, strcmp(why, "out of memory") ? 400 : 503, "%s", why);
    return;
  }
  j->job.work = backup_work;
  j->job.done = backup_done;
  j->s = s;
  j->req = req;
  j->started_us = svc_now_us();
  svc_workers_submit(s->workers, &j->job);
}

/* -------------------------------------------------------------- healthz --- */

typedef struct waiter {
  struct evhttp_request *req;
  struct waiter *next;
} waiter;

/* One synced write at a time; requests that arrive meanwhile share it. */
typedef struct health_probe {
  svc_job job;
  svc *s;
  ferry_store *store;
  waiter *waiters;
  ferry_status st;
  ferry_error err;
} health_probe;

static void health_work(svc_job *jb) {
  health_probe *h = (health_probe *)jb;
  char now[32];
  ferry_error_clear(&h->err);
  ferry_time_format(ferry_time_now_us(), now);
  ferry_wbatch *b = ferry_wbatch_create(h->store, SVC_RESERVED_CUSTOMER);
  if (!b) {
    h->st = ferry_error_set(&h->err, FERRY_ENOMEM, "out of memory");
    return;
  }
  ferry_wbatch_put(b, FERRY_CF_META, SVC_META_HEALTH, strlen(SVC_META_HEALTH), now, strlen(now));
  h->st = ferry_wbatch_commit(b, true, &h->err);
  ferry_wbatch_destroy(b);
}

static void health_done(svc_job *jb) {
  health_probe *h = (health_probe *)jb;
  svc *s = h->s;
  s->health = NULL;
  while (h->waiters) {
    waiter *w = h->waiters;
    h->waiters = w->next;
    if (h->st)
      svc_reply_json(s, w->req, 503,
                     json_pack("{s:s, s:s}", "status", "unhealthy", "error", h->err.msg));
    else
      svc_reply_json(s, w->req, 200,
                     json_pack("{s:s, s:f, s:I, s:I}", "status", "ok", "uptime_s",
                               (double)(svc_now_us() - s->started_us) / 1e6, "customers",
                               (json_int_t)s->custs.count, "running", (json_int_t)s->running));
    free(w);
  }
  if (h->st) svc_log(SVC_ERROR, NULL, NULL, "health check: the store cannot write: %s", h->err.msg);
  free(h);
  svc_check_stopped(s);
}

void svc_admin_healthz(svc *s, struct evhttp_request *req) {
  waiter *w = calloc(1, sizeof *w);
  health_probe *h = s->health ? s->health : calloc(1, sizeof *h);
  if (!w || !h) {
    free(w);
    if (h != s->health) free(h);
    svc_reply_error(s, req, 503, "out of memory");
    return;
  }
  w->req = req;
  w->next = h->waiters;
  h->waiters = w;
  if (s->health) return; /* joins the probe in flight */
  h->job.work = health_work;
  h->job.done = health_done;
  h->s = s;
  h->store = s->store;
  s->health = h;
  svc_workers_submit(s->workers, &h->job);
}
