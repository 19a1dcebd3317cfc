/*
 * The scheduler: when and where each customer's projection runs.
 *
 * DESIGN
 *   Every customer is a small state machine, driven only by events:
 *
 *     IDLE ──kick──▶ SCHEDULED ──slot free──▶ RUNNING ──end──▶ IDLE
 *                      ▲   ▲                    │  kick: rerun = true
 *                      │   └──backoff timer─────┤  failed: backoff
 *                      └───────rerun────────────┘
 *
 *   A kick (an append, an admin operation, a backoff expiry, start-up) moves
 *   an idle customer to the ready list; a running one only gets `rerun` set,
 *   so any number of kicks during a run cause exactly one follow-up run. An
 *   idle customer has no timer and no event armed: it costs nothing.
 *
 *   A run is: fold on a worker thread (RocksDB and CPU work, so one
 *   customer's long replay never stalls the loop or another customer's
 *   ingest), then, only if entities are dirty, apply on the loop thread with
 *   ferry_sync on the customer's own cloud client (a curl multi on the same
 *   event_base), then a count of what is left (worker again). The projector
 *   and the cloud client stay open between runs; each is used by one thread
 *   at a time, handed over through the worker queues.
 *
 *   Nothing runs a customer twice at once: a customer leaves RUNNING only in
 *   end_run(), and enters it only from the ready list, which it is on at most
 *   once. `active` counts what is going on for the customer and its peak is
 *   exported (ferry_customer_concurrent_runs_max) and checked in tests.
 *   Admin operations (rewind, resume, replay) take the same RUNNING state,
 *   so they never overlap a run either; they go first when both wait.
 *
 *   Admission: at most max_runs runs may be in their first second ("fresh")
 *   at once, and at most RUNS_MAX in all; the rest wait on the ready list in
 *   FIFO order, gathering the changes that arrive meanwhile into one run.
 *   A short run costs the loop thread most (the applier syncs the WAL there
 *   a few times per run), so under overload this turns many small runs into
 *   fewer big ones instead of letting fsyncs starve the HTTP server. A run
 *   that lasts longer than FRESH_MS is waiting on its cloud, not on the loop:
 *   it stops counting, so slow or failing clouds never hold up the others.
 *   A run that fails (the cloud unreachable, refusing the token, a storage
 *   error) waits out an exponential backoff with jitter on its own timer,
 *   holding no slot. A mapping change blocks a customer (no run) until a
 *   replay or a reload.
 *
 *   SIGTERM: nothing new starts; syncs are stopped with ferry_sync_stop
 *   (calls on the wire finish and are recorded); svc_check_stopped() ends
 *   the loop once the last run has ended.
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/event.h"
#include "service/service.h"

#define BACKOFF_BASE_MS 1000
#define BACKOFF_CAP_MS 60000
#define FRESH_MS 1000      /* a run older than this no longer counts against max_runs */
#define RUNS_MAX 1024      /* runs at once, fresh or not (connections, memory) */
#define REFUSALS_LOGGED 20 /* a run logs this many refused entities; status lists them all */

typedef enum run_outcome {
  RUN_OK = 0,      /* done; rerun if asked */
  RUN_RETRY = 1,   /* failed: back off, then run again */
  RUN_BLOCKED = 2, /* the mapping changed: wait for a replay or a reload */
  RUN_OP = 3       /* an admin operation ended: run to apply what it changed */
} run_outcome;

/* The worker's part of a run: fold (or only count what is left). */
typedef struct fold_job {
  svc_job job;
  svc_cust *c;
  ferry_store *store;
  svc_conf *conf;
  ferry_projector *proj; /* in: the customer's (NULL: open it); out: the same or new */
  bool info_only;
  ferry_status st;
  ferry_error err;
  ferry_projection_info info;
  uint64_t folded;
  run_outcome then; /* info_only: how the run ends after the count */
} fold_job;

static void start(svc_cust *c);
static void end_run(svc_cust *c, run_outcome o, const char *why);

/* ------------------------------------------------------------ table --- */

svc_cust *svc_cust_get(svc *s, const char *id, bool create) {
  int added = 0;
  if (!id || !ferry_customer_valid(id) || strcmp(id, SVC_RESERVED_CUSTOMER) == 0) return NULL;
  size_t n = strlen(id);
  strmap_entry *e = create ? strmap_upsert(&s->custs, id, n, &added) : strmap_get(&s->custs, id, n);
  if (!e) return NULL;
  if (e->val || !create) return e->val;
  svc_cust *c = calloc(1, sizeof *c);
  if (!c) return NULL; /* the entry stays, valueless; the next lookup retries */
  memcpy(c->id, id, n + 1);
  c->s = s;
  e->val = c;
  return c;
}

const char *svc_cust_state_name(const svc_cust *c) {
  if (c->blocked && c->state == SVC_IDLE) return "blocked";
  switch (c->state) {
  case SVC_IDLE: return "idle";
  case SVC_SCHEDULED: return c->in_backoff ? "backoff" : "scheduled";
  case SVC_RUNNING: return "running";
  }
  return "idle";
}

/* ------------------------------------------------------- the machine --- */

static void ready_push(svc *s, svc_cust *c) {
  if (c->queued) return;
  c->queued = true;
  c->ready_next = NULL;
  if (s->ready_tail)
    s->ready_tail->ready_next = c;
  else
    s->ready_head = c;
  s->ready_tail = c;
  event_active(s->dispatch, EV_TIMEOUT, 0);
}

static svc_cust *ready_pop(svc *s) {
  svc_cust *c = s->ready_head;
  if (!c) return NULL;
  s->ready_head = c->ready_next;
  if (!s->ready_head) s->ready_tail = NULL;
  c->ready_next = NULL;
  c->queued = false;
  return c;
}

void svc_sched_kick(svc_cust *c) {
  svc *s = c->s;
  if (s->stopping) return;
  switch (c->state) {
  case SVC_IDLE:
    c->state = SVC_SCHEDULED;
    ready_push(s, c);
    break;
  case SVC_SCHEDULED: break; /* already waiting: for a slot or its backoff */
  case SVC_RUNNING: c->rerun = true; break;
  }
}

/* A fresh run stops counting against max_runs. */
static void unfresh(svc_cust *c) {
  svc *s = c->s;
  if (!c->fresh) return;
  c->fresh = false;
  s->fresh--;
  evtimer_del(c->timer);
  if (s->ready_head) event_active(s->dispatch, EV_TIMEOUT, 0); /* a slot is free */
}

/* The customer's one timer: the end of a backoff, or of a run's first second. */
static void on_timer(evutil_socket_t fd, short what, void *arg) {
  svc_cust *c = arg;
  (void)fd;
  (void)what;
  if (c->state == SVC_RUNNING) {
    unfresh(c);
  } else if (c->in_backoff) {
    c->in_backoff = false;
    if (!c->s->stopping) ready_push(c->s, c);
  }
}

static bool timer_ready(svc_cust *c) {
  return c->timer || (c->timer = evtimer_new(c->s->base, on_timer, c)) != NULL;
}

/* Exponential backoff with jitter: half fixed, half random. */
static void backoff(svc_cust *c) {
  unsigned shift = c->failures < 7 ? c->failures : 6;
  c->failures++;
  long ms = (long)BACKOFF_BASE_MS << shift;
  if (ms > BACKOFF_CAP_MS) ms = BACKOFF_CAP_MS;
  ms = ms / 2 + random() % (ms / 2 + 1);
  if (!timer_ready(c)) {
    c->state = SVC_IDLE; /* out of memory: the next kick tries again */
    return;
  }
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  c->state = SVC_SCHEDULED;
  c->in_backoff = true;
  c->backoff_until_us = ferry_time_now_us() + ms * 1000;
  evtimer_add(c->timer, &tv);
  svc_log(SVC_WARN, c->id, json_pack("{s:i, s:i}", "retry_in_ms", (int)ms, "failures", c->failures),
          "run failed, retrying later: %s", c->last_error);
}

/* The customer enters RUNNING (a run or an operation). */
static void begin(svc_cust *c) {
  svc *s = c->s;
  c->state = SVC_RUNNING;
  c->rerun = false;
  c->run_started_us = svc_now_us();
  c->refusals_logged = 0;
  if (++c->active > c->active_max) c->active_max = c->active;
  if (c->active_max > s->metrics.concurrent_max) s->metrics.concurrent_max = c->active_max;
  if (c->active > 1)
    svc_log(SVC_ERROR, c->id, NULL, "BUG: %u runs of one customer at once", c->active);
  s->running++;
  s->metrics.runs_in_progress++;
  c->run_conf = svc_conf_ref(s->conf);
  struct timeval tv = {FRESH_MS / 1000, (FRESH_MS % 1000) * 1000};
  if (timer_ready(c) && evtimer_add(c->timer, &tv) == 0) { /* else it never counts */
    c->fresh = true;
    s->fresh++;
  }
}

static void end_run(svc_cust *c, run_outcome o, const char *why) {
  svc *s = c->s;
  unfresh(c);
  c->active--;
  s->running--;
  s->metrics.runs_in_progress--;
  if (o != RUN_OP) {
    c->runs++;
    s->metrics.runs++;
  }
  if (o == RUN_RETRY) {
    c->run_failures++;
    s->metrics.run_failures++;
    if (why != c->last_error)
      snprintf(c->last_error, sizeof c->last_error, "%s", why ? why : "failed");
  }
  svc_conf_unref(c->run_conf);
  c->run_conf = NULL;
  if (s->stopping) {
    c->state = SVC_IDLE;
    svc_check_stopped(s);
    return;
  }
  if (o == RUN_RETRY && !c->ops_head) {
    backoff(c);
  } else {
    if (o != RUN_RETRY) c->failures = 0;
    if (o == RUN_OP) c->rerun = true; /* apply what the operation changed */
    bool again = c->ops_head || (c->rerun && o != RUN_BLOCKED);
    c->rerun = false;
    c->state = again ? SVC_SCHEDULED : SVC_IDLE;
    if (again) ready_push(s, c);
  }
  if (s->ready_head) event_active(s->dispatch, EV_TIMEOUT, 0); /* a slot is free */
}

/* ---------------------------------------------------------------- runs --- */

static void fold_work(svc_job *jb) {
  fold_job *j = (fold_job *)jb;
  const ferry_config *cfg = j->conf->cfg;
  ferry_error_clear(&j->err);
  if (!j->proj) {
    ferry_projector_opts o = {cfg->cloud.id_field, cfg->cloud.external_key_field, 0};
    j->st = ferry_projector_open(&j->proj, j->store, j->conf->map, j->c->id, &o, false, &j->err);
    if (j->st) return;
  }
  if (!j->info_only) j->st = ferry_projector_fold(j->proj, NULL, NULL, &j->folded, &j->err);
  if (!j->st) j->st = ferry_projector_info(j->proj, &j->info, &j->err);
}

static void note_info(svc_cust *c, const ferry_projection_info *i) {
  if (i->head_seq > c->head_seq) c->head_seq = i->head_seq;
  c->folded_seq = i->folded_seq;
  c->dirty = i->dirty;
  c->failed = i->failed;
  c->held = i->held;
}

/* The customer's projector as the worker left it. */
static void take_projector(svc_cust *c, fold_job *j) {
  if (j->proj && j->proj != c->proj) {
    c->proj = j->proj;
    svc_conf_unref(c->proj_conf);
    c->proj_conf = svc_conf_ref(j->conf);
  }
  if (j->st && j->st != FERRY_EMAPPING_CHANGED && c->proj) { /* reopen after an error */
    ferry_projector_close(c->proj);
    c->proj = NULL;
    svc_conf_unref(c->proj_conf);
    c->proj_conf = NULL;
  }
}

static void submit_fold(svc_cust *c, bool info_only, run_outcome then);
static void start_sync(svc_cust *c);

static void fold_done(svc_job *jb) {
  fold_job *j = (fold_job *)jb;
  svc_cust *c = j->c;
  take_projector(c, j);
  if (j->st == FERRY_EMAPPING_CHANGED) {
    c->blocked = true;
    svc_conf_unref(c->blocked_conf);
    c->blocked_conf = svc_conf_ref(j->conf);
    snprintf(c->blocked_msg, sizeof c->blocked_msg, "%.*s", (int)sizeof c->blocked_msg - 1,
             j->err.msg);
    svc_log(SVC_WARN, c->id, NULL, "not running: %s (POST /v1/customers/%s/replay)", j->err.msg,
            c->id);
    end_run(c, RUN_BLOCKED, NULL);
  } else if (j->st) {
    svc_log(SVC_ERROR, c->id, NULL, "%s failed: %s", j->info_only ? "counting" : "fold",
            j->err.msg);
    end_run(c, RUN_RETRY, j->err.msg);
  } else {
    note_info(c, &j->info);
    c->blocked = false;
    if (!j->info_only) c->run_folded = j->folded;
    if (j->info_only)
      end_run(c, j->then, c->last_error);
    else if (c->s->stopping || j->info.dirty == 0)
      end_run(c, RUN_OK, NULL);
    else
      start_sync(c);
  }
  svc_conf_unref(j->conf);
  free(j);
}

static void submit_fold(svc_cust *c, bool info_only, run_outcome then) {
  fold_job *j = calloc(1, sizeof *j);
  if (!j) {
    end_run(c, RUN_RETRY, "out of memory");
    return;
  }
  j->job.work = fold_work;
  j->job.done = fold_done;
  j->c = c;
  j->store = c->s->store;
  j->conf = svc_conf_ref(c->run_conf);
  j->proj = c->proj;
  j->info_only = info_only;
  j->then = then;
  svc_workers_submit(c->s->workers, &j->job);
}

/* Each finished cloud call: metrics, and a line for a refusal. */
static void on_call(void *arg, const ferry_call *call, const ferry_call_result *r) {
  svc_cust *c = arg;
  if (!r) return; /* NONE or WAIT: no request */
  svc_metrics_call(&c->s->metrics, r->method, r->http_status, r->latency_us);
  if (r->outcome == FERRY_OUTCOME_FAILED && ++c->refusals_logged <= REFUSALS_LOGGED)
    svc_log(SVC_WARN, c->id,
            json_pack("{s:s, s:s, s:i}", "entity", call->entity, "key", call->key, "status",
                      r->http_status),
            "the cloud refused %s/%s: %s", call->entity, call->key, r->error ? r->error : "");
}

static void on_sync_done(void *arg, ferry_status st, const ferry_sync_report *rep,
                         const ferry_error *err) {
  svc_cust *c = arg;
  svc *s = c->s;
  c->sync_st = st;
  c->sync_rep = *rep;
  c->sync_err = *err;
  c->done_next = s->done_head; /* finished from the dispatcher, outside the sync's callback */
  s->done_head = c;
  event_active(s->dispatch, EV_TIMEOUT, 0);
}

static void start_sync(svc_cust *c) {
  svc *s = c->s;
  ferry_error err;
  ferry_status st = FERRY_OK;
  ferry_error_clear(&err);
  if (!c->cloud) {
    st = ferry_cloud_create_for(&c->cloud, s->base, c->run_conf->cfg, c->id, &err);
    if (!st) c->cloud_conf = svc_conf_ref(c->run_conf);
  }
  ferry_sync_opts o = {0, on_call, c};
  if (!st) st = ferry_sync_create(&c->sync, s->base, c->id, c->proj, c->cloud, &o, &err);
  if (!st) st = ferry_sync_start(c->sync, on_sync_done, c, &err);
  if (st) {
    ferry_sync_destroy(c->sync);
    c->sync = NULL;
    svc_log(SVC_ERROR, c->id, NULL, "cannot start applying: %s", err.msg);
    end_run(c, RUN_RETRY, err.msg);
  }
}

static void log_sync(svc_cust *c) {
  const ferry_sync_report *r = &c->sync_rep;
  double ms = (double)(svc_now_us() - c->run_started_us) / 1000.0;
  json_t *f = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:f}", "folded",
                        (json_int_t)c->run_folded, "calls", (json_int_t)r->calls, "created",
                        (json_int_t)(r->created + r->adopted), "patched", (json_int_t)r->patched,
                        "deleted", (json_int_t)r->deleted, "failed", (json_int_t)r->failed,
                        "unknown", (json_int_t)r->unknown, "stopped", r->stopped, "ms", ms);
  if (c->sync_st)
    svc_log(SVC_ERROR, c->id, f, "apply failed: %s", c->sync_err.msg);
  else
    svc_log(r->calls ? SVC_INFO : SVC_DEBUG, c->id, f, "applied");
}

/* A sync ended (from the dispatcher): free it, then count what is left. */
static void finish_sync(svc_cust *c) {
  ferry_sync_destroy(c->sync);
  c->sync = NULL;
  log_sync(c);
  run_outcome o = RUN_OK;
  if (c->sync_st) {
    o = RUN_RETRY;
    snprintf(c->last_error, sizeof c->last_error, "%.*s", (int)sizeof c->last_error - 1,
             c->sync_err.msg);
    if (c->sync_st == FERRY_EAUTH || c->sync_st == FERRY_ECLOUD) { /* a fresh client next time */
      ferry_cloud_destroy(c->cloud);
      c->cloud = NULL;
      svc_conf_unref(c->cloud_conf);
      c->cloud_conf = NULL;
    }
  }
  if (c->sync_st && !c->proj)
    end_run(c, o, c->last_error);
  else
    submit_fold(c, true, o);
}

/* ---------------------------------------------------------- operations --- */

static void op_work(svc_job *jb) {
  svc_op *op = (svc_op *)jb;
  const ferry_config *cfg = op->conf->cfg;
  ferry_projector *p = NULL;
  ferry_projector_close(op->old_proj); /* reopened with allow_mapping_change */
  op->old_proj = NULL;
  ferry_projector_opts o = {cfg->cloud.id_field, cfg->cloud.external_key_field, 0};
  op->st = ferry_projector_open(&p, op->store, op->conf->map, op->c->id, &o, true, &op->err);
  if (!op->st) {
    switch (op->kind) {
    case SVC_OP_REWIND:
      op->st = ferry_projector_rewind(p, op->to_seq, op->hold, NULL, NULL, &op->err);
      break;
    case SVC_OP_RESUME: op->st = ferry_projector_resume(p, &op->err); break;
    case SVC_OP_REPLAY: op->st = ferry_projector_replay(p, NULL, NULL, &op->err); break;
    case SVC_OP_RETRY: op->st = ferry_projector_retry_failed(p, &op->retried, &op->err); break;
    }
  }
  if (!op->st) op->st = ferry_projector_info(p, &op->info, &op->err);
  ferry_projector_close(p);
}

static void op_done(svc_job *jb) {
  svc_op *op = (svc_op *)jb;
  svc_cust *c = op->c;
  bool ok = op->st == FERRY_OK;
  if (ok) {
    note_info(c, &op->info);
    if (!op->info.mapping_changed) c->blocked = false;
  }
  svc_log(ok ? SVC_INFO : SVC_ERROR, c->id, NULL, "%s %s%s%s", svc_op_name(op->kind),
          ok ? "done" : "failed", ok ? "" : ": ", ok ? "" : op->err.msg);
  svc_admin_op_reply(op);
  end_run(c, ok ? RUN_OP : RUN_OK, NULL);
}

static void start_op(svc_cust *c) {
  svc_op *op = c->ops_head;
  c->ops_head = op->next;
  if (!c->ops_head) c->ops_tail = NULL;
  op->next = NULL;
  begin(c);
  op->job.work = op_work;
  op->job.done = op_done;
  op->conf = svc_conf_ref(c->run_conf);
  op->store = c->s->store;
  op->old_proj = c->proj; /* the worker closes it: the operation reopens its own */
  c->proj = NULL;
  svc_conf_unref(c->proj_conf);
  c->proj_conf = NULL;
  svc_workers_submit(c->s->workers, &op->job);
}

void svc_sched_op(svc_cust *c, svc_op *op) {
  svc *s = c->s;
  op->c = c;
  op->next = NULL;
  if (s->stopping) {
    op->st = ferry_error_set(&op->err, FERRY_EBUSY, "ferryd is shutting down");
    svc_admin_op_reply(op);
    return;
  }
  if (c->ops_tail)
    c->ops_tail->next = op;
  else
    c->ops_head = op;
  c->ops_tail = op;
  if (c->state == SVC_IDLE) {
    c->state = SVC_SCHEDULED;
    ready_push(s, c);
  } else if (c->state == SVC_SCHEDULED && c->in_backoff) { /* no need to wait for the cloud */
    evtimer_del(c->timer);
    c->in_backoff = false;
    ready_push(s, c);
  }
}

/* ---------------------------------------------------------- dispatcher --- */

/* Drops cached handles opened under an older configuration. */
static void refresh_handles(svc_cust *c) {
  svc *s = c->s;
  if (c->proj && c->proj_conf != s->conf) {
    ferry_projector_close(c->proj);
    c->proj = NULL;
    svc_conf_unref(c->proj_conf);
    c->proj_conf = NULL;
  }
  if (c->cloud && c->cloud_conf != s->conf) {
    ferry_cloud_destroy(c->cloud);
    c->cloud = NULL;
    svc_conf_unref(c->cloud_conf);
    c->cloud_conf = NULL;
  }
}

static void start(svc_cust *c) {
  svc *s = c->s;
  refresh_handles(c);
  if (c->ops_head) {
    start_op(c);
    return;
  }
  if (c->blocked && c->blocked_conf == s->conf) { /* waits for a replay or a reload */
    c->state = SVC_IDLE;
    return;
  }
  begin(c);
  c->run_folded = 0;
  submit_fold(c, false, RUN_OK);
}

static void on_dispatch(evutil_socket_t fd, short what, void *arg) {
  svc *s = arg;
  (void)fd;
  (void)what;
  while (s->done_head) {
    svc_cust *c = s->done_head;
    s->done_head = c->done_next;
    c->done_next = NULL;
    finish_sync(c);
  }
  while (!s->stopping && s->ready_head && s->fresh < s->opts.max_runs && s->running < RUNS_MAX)
    start(ready_pop(s));
}

ferry_status svc_sched_init(svc *s, ferry_error *err) {
  strmap_init(&s->custs);
  s->dispatch = event_new(s->base, -1, 0, on_dispatch, s);
  if (!s->dispatch) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  return FERRY_OK;
}

/* ------------------------------------------------------------ life cycle --- */

void svc_sched_start_all(svc *s) {
  for (size_t i = 0; i < s->custs.count; i++)
    if (s->custs.entries[i].val) svc_sched_kick(s->custs.entries[i].val);
}

void svc_sched_reloaded(svc *s) {
  for (size_t i = 0; i < s->custs.count; i++) {
    svc_cust *c = s->custs.entries[i].val;
    if (c && c->blocked) svc_sched_kick(c); /* the new mapping may be the old one again */
  }
}

void svc_sched_stop(svc *s) {
  while (s->ready_head) {
    svc_cust *c = ready_pop(s);
    if (c->state == SVC_SCHEDULED) c->state = SVC_IDLE;
  }
  for (size_t i = 0; i < s->custs.count; i++) {
    svc_cust *c = s->custs.entries[i].val;
    if (!c) continue;
    if (c->in_backoff) {
      evtimer_del(c->timer);
      c->in_backoff = false;
      c->state = SVC_IDLE;
    }
    while (c->ops_head) {
      svc_op *op = c->ops_head;
      c->ops_head = op->next;
      op->st = ferry_error_set(&op->err, FERRY_EBUSY, "ferryd is shutting down");
      svc_admin_op_reply(op);
    }
    c->ops_tail = NULL;
    if (c->sync) ferry_sync_stop(c->sync);
  }
}

static void cust_free(svc_cust *c) {
  if (!c) return;
  ferry_sync_destroy(c->sync);
  ferry_cloud_destroy(c->cloud);
  ferry_projector_close(c->proj);
  svc_conf_unref(c->proj_conf);
  svc_conf_unref(c->cloud_conf);
  svc_conf_unref(c->run_conf);
  svc_conf_unref(c->blocked_conf);
  if (c->timer) event_free(c->timer);
  svc_feed_free(c->feed);
  if (c->ingest_token) {
    memset(c->ingest_token, 0, c->ingest_len);
    free(c->ingest_token);
  }
  free(c);
}

static void cust_free_val(void *v) {
  cust_free(v);
}

void svc_sched_free(svc *s) {
  strmap_free(&s->custs, cust_free_val);
  if (s->dispatch) event_free(s->dispatch);
  s->dispatch = NULL;
}
