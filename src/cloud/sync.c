/*
 * The sync driver: applies a projector's plan through a cloud client and
 * records every finished call, on the caller's event loop.
 *
 * DESIGN: ordering, bounded memory, termination
 *   The plan comes in phases (ferry_projector_phases): creates and patches by
 *   ascending rank, then deletes by descending rank. A phase's calls may run
 *   together; the next phase starts only when the current one has drained,
 *   because a record must exist before records that point at it are created,
 *   and referrers must let go of a record before it is deleted.
 *   A phase is planned in chunks: the walk stops once it has handed us
 *   `chunk` entities we have not seen in this pass, and is walked again when
 *   our queue runs low. An entity is handled at most once per pass (the
 *   `handled` set), which also keeps it to one call at a time, and makes a
 *   re-walk skip entities still in flight or left dirty on purpose (WAIT).
 *   Memory is the queue (one chunk) plus the set; never the whole plan.
 *   Before a chunk's creates are sent, each gets its create intent
 *   (ferry_projector_begin_create: generation, resume), then one WAL sync
 *   makes them all durable, so a crash after a POST left always finds the
 *   intent and the next run looks the record up before posting again.
 *   That write and sync run on the writer thread while the loop goes on
 *   with the calls already queued; the chunk's calls are gated until it is
 *   done (fill polls it, and waits for it only when nothing else is on the
 *   wire), so a walk does not stall the network for a disk sync.
 *   At most `concurrency` calls are in flight (a call waiting to retry
 *   counts). NONE calls (dirty but equal) are recorded without a request.
 *   A recorded create can make its referrers dirty again (they can now point
 *   at its id), and a PATCH answered 404 leaves its entity to be created, so
 *   after the last phase a new pass starts, until a pass sends nothing (or
 *   max_passes). WAIT entities (referencing one the cloud refused) stay dirty
 *   and do not count as sent, so they cannot keep passes going.
 *   A call that gives up without knowing (the cloud unreachable or failing
 *   after every retry, or refusing the token) stops the sync: nothing new is
 *   sent, calls in flight finish and are recorded, and the result says why.
 *   That entity stays dirty for the next sync.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/strmap.h"
#include "ferry/cloud.h"

typedef struct job {
  struct job *next;
  struct ferry_sync *s;
  ferry_call *call;
  char idem[33];
  bool resume;
  bool intent; /* CREATE: begin_create done */
  unsigned gate; /* the intents write its call waits for (0: none) */
} job;

struct ferry_sync {
  struct event_base *base;
  char *customer;
  ferry_projector *p;
  ferry_cloud *c;
  ferry_sync_opts o;
  unsigned limit; /* calls in flight at most */
  unsigned chunk; /* entities planned per walk */
  unsigned nphases, phase, pass;
  bool exhausted; /* the current phase's walk found nothing new */
  strmap handled; /* "entity\0key" of this pass */
  ferry_plan_cursor cursor; /* where the current phase's walk resumes */
  job *qhead, *qtail;
  unsigned nqueued, in_flight, sent_in_pass, waiting_in_pass, walk_new;
  bool started, stopping, ended, done_called;
  ferry_status st;
  ferry_error err;
  ferry_sync_report rep;
  struct event *kick; /* deferred advance and the done callback */
  struct event *flush; /* end of a loop turn: write the turn's outcomes */
  bool flush_due;
  unsigned intents_written, intents_durable; /* chunk intent writes: started, known on disk */
  ferry_sync_done_fn done;
  void *done_arg;
};

static void advance(ferry_sync *s);

static void job_free(job *j) {
  if (!j) return;
  ferry_call_free(j->call);
  free(j);
}

/* Stops with st unless an error is already there (the first one wins). */
static void fail(ferry_sync *s, ferry_status st, const ferry_error *err) {
  if (s->st) return;
  s->st = st;
  s->err = *err;
  s->err.code = st;
}

static void fail_oom(ferry_sync *s) {
  ferry_error e;
  ferry_error_set(&e, FERRY_ENOMEM, "out of memory during sync");
  fail(s, FERRY_ENOMEM, &e);
}

/* ------------------------------------------------------------ planning --- */

static int on_planned(void *arg, ferry_call **cp) {
  ferry_sync *s = arg;
  const ferry_call *c = *cp;
  size_t el = strlen(c->entity), kl = strlen(c->key);
  char *k = malloc(el + kl + 1);
  int added = 0;
  if (!k || (memcpy(k, c->entity, el + 1), memcpy(k + el + 1, c->key, kl),
             !strmap_upsert(&s->handled, k, el + 1 + kl, &added))) {
    free(k);
    fail_oom(s);
    return 1;
  }
  free(k);
  if (!added) return 0; /* in flight, queued, or done in this pass */
  s->walk_new++;
  if (c->kind == FERRY_CALL_WAIT) {
    s->waiting_in_pass++;
    if (s->o.on_call) s->o.on_call(s->o.on_call_arg, c, NULL);
    return 0;
  }
  job *j = calloc(1, sizeof *j);
  if (!j) {
    fail_oom(s);
    return 1;
  }
  j->call = *cp; /* taken: the walk does not free it */
  *cp = NULL;
  j->s = s;
  if (s->qtail)
    s->qtail->next = j;
  else
    s->qhead = j;
  s->qtail = j;
  s->nqueued++;
  return s->walk_new >= s->chunk;
}

/* Create intents for the chunk's new creates (and the in-doubt marks of its
 * patches and deletes), then one WAL sync before any of them is sent. */
static void begin_creates(ferry_sync *s, job *from) {
  ferry_error err;
  bool any = false;
  for (job *j = from; j && !s->st; j = j->next) {
    ferry_call_kind k = j->call->kind;
    if ((k != FERRY_CALL_CREATE && k != FERRY_CALL_PATCH && k != FERRY_CALL_DELETE) || j->intent)
      continue;
    uint64_t gen = 0;
    ferry_status st = ferry_projector_begin_call(s->p, j->call, &gen, &j->resume, &err);
    if (st) {
      fail(s, st, &err);
      return;
    }
    j->intent = any = true;
    j->gate = s->intents_written + 1;
    if (k == FERRY_CALL_CREATE)
      ferry_cloud_idempotency_key(j->idem, s->customer, j->call->entity, j->call->key, gen);
  }
  if (any) {
    ferry_status st = ferry_projector_flush_start(s->p, true, &err);
    if (st) fail(s, st, &err);
    else s->intents_written++;
  }
}

/* Whether the gated calls may go: their intents are on disk. While the
 * write runs and other calls are on the wire, their answers (or a short
 * timer) bring us back; with nothing else to do, wait for it. */
static bool intents_on_disk(ferry_sync *s) {
  ferry_error err;
  bool busy = false;
  ferry_status st = ferry_projector_flush_poll(s->p, &busy, &err);
  if (!st && busy && s->in_flight > 0) {
    struct timeval soon = {0, 1000};
    event_add(s->kick, &soon); /* a call waiting to retry may answer late */
    return false;
  }
  if (!st && busy) st = ferry_projector_flush(s->p, false, &err);
  if (st) {
    fail(s, st, &err);
    return false;
  }
  s->intents_durable = s->intents_written;
  return true;
}

/* Writes the outcomes recorded so far (one batch for all of them). */
static void flush_now(ferry_sync *s) {
  ferry_error err;
  s->flush_due = false;
  ferry_status st = ferry_projector_flush(s->p, false, &err);
  if (st) fail(s, st, &err);
}

/* After an outcome is recorded: flush once the loop has handled every
 * answer that arrived with it (the event runs after those already active). */
static void flush_soon(ferry_sync *s) {
  if (s->flush_due) return;
  s->flush_due = true;
  event_active(s->flush, EV_TIMEOUT, 0);
}

/* The turn's outcomes go to the writer thread; the next flush, or the
 * walk's, waits for them. While the writer is still busy (a chunk's
 * intents and their sync), they wait in the group and we look again soon. */
static void on_flush(evutil_socket_t fd, short what, void *arg) {
  ferry_sync *s = arg;
  ferry_error err;
  bool busy = false;
  (void)fd;
  (void)what;
  if (!s->flush_due) return;
  ferry_status st = ferry_projector_flush_poll(s->p, &busy, &err);
  if (!st && busy) {
    struct timeval soon = {0, 1000};
    event_add(s->flush, &soon);
    return;
  }
  s->flush_due = false;
  if (!st) st = ferry_projector_flush_start(s->p, false, &err);
  if (st) {
    fail(s, st, &err);
    advance(s);
  }
}

/* Walks the current phase for up to a chunk of new entities; returns how many. */
static unsigned plan_chunk(ferry_sync *s) {
  ferry_error err;
  job *tail = s->qtail;
  s->walk_new = 0;
  flush_now(s); /* the walk reads dirty marks: they must include every outcome */
  if (s->st) return 0;
  ferry_status st = ferry_projector_plan_phase(s->p, s->phase, &s->cursor, on_planned, s, &err);
  if (st) fail(s, st, &err);
  if (!s->st) begin_creates(s, tail ? tail->next : s->qhead);
  return s->walk_new;
}

/* -------------------------------------------------------------- results --- */

static void count(ferry_sync *s, const ferry_call *c, const ferry_cloud_result *r) {
  ferry_sync_report *rep = &s->rep;
  rep->calls++;
  switch (r->outcome) {
  case FERRY_OUTCOME_OK:
    if (c->kind == FERRY_CALL_CREATE)
      rep->created++;
    else if (c->kind == FERRY_CALL_PATCH)
      rep->patched++;
    else
      rep->deleted++;
    break;
  case FERRY_OUTCOME_ADOPTED:
    rep->adopted++;
    if (r->error) rep->duplicates++; /* several records matched: must never happen */
    break;
  case FERRY_OUTCOME_GONE:
    if (c->kind == FERRY_CALL_DELETE)
      rep->deleted++;
    else
      rep->gone++;
    break;
  case FERRY_OUTCOME_FAILED: rep->failed++; break;
  case FERRY_OUTCOME_UNKNOWN: rep->unknown++; break;
  }
}

/* A call that gave up without knowing: the cloud, not the entity, is the
 * problem, so the sync stops (see DESIGN). */
static void gave_up(ferry_sync *s, const ferry_cloud_result *r) {
  ferry_error e;
  if (r->cancelled) return;
  ferry_status st = r->unauthorized ? FERRY_EAUTH : FERRY_ECLOUD;
  ferry_error_set(&e, st, "cloud %s: %s", r->unauthorized ? "refused the token" : "unavailable",
                  r->error ? r->error : "no answer");
  fail(s, st, &e);
}

static void on_result(void *arg, const ferry_cloud_result *r) {
  job *j = arg;
  ferry_sync *s = j->s;
  ferry_error err;
  ferry_call_result cr = {r->outcome, r->http_status, r->id,       r->method,
                          r->path,    r->error,       r->attempts, r->latency_us};
  s->in_flight--;
  ferry_status st = ferry_projector_record(s->p, j->call, &cr, &err);
  if (st) fail(s, st, &err);
  flush_soon(s);
  count(s, j->call, r);
  if (r->outcome == FERRY_OUTCOME_UNKNOWN) gave_up(s, r);
  if (s->o.on_call) s->o.on_call(s->o.on_call_arg, j->call, &cr);
  job_free(j);
  advance(s);
}

/* NONE: dirty but already equal; recording it clears the mark. */
static void record_none(ferry_sync *s, job *j) {
  ferry_error err;
  ferry_call_result cr = {FERRY_OUTCOME_OK, 0, NULL, NULL, NULL, NULL, 0, 0};
  ferry_status st = ferry_projector_record(s->p, j->call, &cr, &err);
  if (st) fail(s, st, &err);
  flush_soon(s);
  s->rep.unchanged++;
  if (s->o.on_call) s->o.on_call(s->o.on_call_arg, j->call, NULL);
}

/* A call the client would not take (a malformed id or endpoint) fails that
 * entity, as the cloud refusing it would. */
static void record_rejected(ferry_sync *s, job *j, const ferry_error *why) {
  ferry_error err;
  ferry_call_result cr = {FERRY_OUTCOME_FAILED, 0, NULL, NULL, NULL, why->msg, 0, 0};
  ferry_status st = ferry_projector_record(s->p, j->call, &cr, &err);
  if (st) fail(s, st, &err);
  flush_soon(s);
  s->rep.calls++;
  s->rep.failed++;
  if (s->o.on_call) s->o.on_call(s->o.on_call_arg, j->call, &cr);
}

static void submit(ferry_sync *s, job *j) {
  const ferry_call *c = j->call;
  ferry_error err;
  ferry_cloud_request req = {0};
  req.endpoint = c->endpoint;
  req.external_key = c->external_key;
  switch (c->kind) {
  case FERRY_CALL_CREATE:
    req.op = FERRY_CLOUD_CREATE;
    req.body = c->body;
    req.idempotency_key = j->idem;
    req.resume = j->resume;
    break;
  case FERRY_CALL_PATCH:
    req.op = FERRY_CLOUD_PATCH;
    req.id = c->cloud_id;
    req.body = c->body;
    break;
  default:
    req.op = FERRY_CLOUD_DELETE;
    req.id = c->cloud_id; /* NULL: its create never got an answer; find it first */
    break;
  }
  ferry_status st = ferry_cloud_submit(s->c, &req, on_result, j, &err);
  if (st == FERRY_EINVAL) {
    record_rejected(s, j, &err);
    job_free(j);
  } else if (st) {
    fail(s, st, &err);
    job_free(j);
  } else {
    s->in_flight++;
    s->sent_in_pass++;
  }
}

/* Sends queued calls while the in-flight limit allows. */
static void fill(ferry_sync *s) {
  while (s->qhead && !s->st && !s->stopping) {
    job *j = s->qhead;
    if (j->call->kind != FERRY_CALL_NONE && s->in_flight >= s->limit) return;
    if (j->gate > s->intents_durable && !intents_on_disk(s)) return;
    s->qhead = j->next;
    if (!s->qhead) s->qtail = NULL;
    s->nqueued--;
    j->next = NULL;
    if (j->call->kind == FERRY_CALL_NONE) {
      record_none(s, j);
      job_free(j);
    } else {
      submit(s, j);
    }
  }
}

/* -------------------------------------------------------------- driving --- */

static void drop_queue(ferry_sync *s) {
  while (s->qhead) {
    job *j = s->qhead;
    s->qhead = j->next;
    job_free(j); /* its entity stays dirty; a create keeps its intent */
  }
  s->qtail = NULL;
  s->nqueued = 0;
}

static void new_pass(ferry_sync *s) {
  strmap_free(&s->handled, NULL);
  strmap_init(&s->handled);
  s->pass++;
  s->phase = 0;
  ferry_plan_cursor_reset(&s->cursor);
  s->exhausted = false;
  s->sent_in_pass = s->waiting_in_pass = 0;
}

/* The one line `ferry status` shows for this run. */
static void note(ferry_sync *s) {
  char line[256];
  ferry_error err;
  const ferry_sync_report *r = &s->rep;
  if (s->st)
    snprintf(line, sizeof line, "error: %.200s", s->err.msg);
  else
    snprintf(line, sizeof line,
             "%s: created %llu, adopted %llu, patched %llu, deleted %llu, failed %llu",
             s->stopping ? "stopped" : "ok", (unsigned long long)r->created,
             (unsigned long long)r->adopted, (unsigned long long)r->patched,
             (unsigned long long)r->deleted, (unsigned long long)r->failed);
  bool clean = !s->st && !s->stopping && !r->failed && !r->unknown && !r->waiting;
  ferry_status st = ferry_projector_note_sync(s->p, line, clean, &err);
  if (st) fail(s, st, &err);
}

static void end(ferry_sync *s) {
  ferry_error err;
  s->flush_due = false;
  ferry_status st = ferry_projector_flush(s->p, true, &err); /* recorded outcomes, durably */
  if (st) fail(s, st, &err);
  if ((st = ferry_projector_group_end(s->p, &err))) fail(s, st, &err);
  note(s);
  s->rep.stopped = s->stopping;
  ferry_cloud_stats_get(s->c, &s->rep.cloud);
  s->ended = true;
  event_active(s->kick, EV_TIMEOUT, 0); /* done runs from the loop */
}

static void advance(ferry_sync *s) {
  while (!s->ended) {
    if (s->st || s->stopping) {
      drop_queue(s);
      if (s->in_flight == 0) end(s);
      return;
    }
    fill(s);
    if (s->st || s->stopping) continue;
    if (!s->exhausted && s->nqueued < s->limit) {
      if (plan_chunk(s) == 0) s->exhausted = true;
      continue;
    }
    if (s->nqueued > 0 || s->in_flight > 0) return; /* the phase drains first */
    if (++s->phase < s->nphases) {
      s->exhausted = false;
      continue;
    }
    s->rep.passes = s->pass;
    s->rep.waiting = s->waiting_in_pass;
    if (s->sent_in_pass == 0 || s->pass >= s->o.max_passes) {
      end(s);
      return;
    }
    new_pass(s);
  }
}

static void on_kick(evutil_socket_t fd, short what, void *arg) {
  ferry_sync *s = arg;
  (void)fd;
  (void)what;
  if (!s->ended) {
    advance(s);
  } else if (!s->done_called) {
    s->done_called = true;
    if (s->done) s->done(s->done_arg, s->st, &s->rep, &s->err);
  }
}

ferry_status ferry_sync_create(ferry_sync **out, struct event_base *base, const char *customer,
                               ferry_projector *p, ferry_cloud *c, const ferry_sync_opts *opts,
                               ferry_error *err) {
  ferry_status st = FERRY_OK;
  ferry_sync *s = calloc(1, sizeof *s);
  *out = NULL;
  if (!s || !(s->customer = strdup(customer)) || !(s->kick = event_new(base, -1, 0, on_kick, s)) ||
      !(s->flush = event_new(base, -1, 0, on_flush, s))) {
    st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
    goto done;
  }
  s->base = base;
  s->p = p;
  s->c = c;
  if (opts) s->o = *opts;
  if (!s->o.max_passes) s->o.max_passes = 16;
  s->limit = ferry_cloud_concurrency(c);
  /* large chunks: each walk re-seeks past the dirty marks already removed,
   * and each chunk's create intents cost one WAL sync */
  s->chunk = s->limit * 64 < 256 ? 256 : s->limit * 64 > 1024 ? 1024 : s->limit * 64;
  strmap_init(&s->handled);
  ferry_error_clear(&s->err);
done:
  if (st)
    ferry_sync_destroy(s);
  else
    *out = s;
  return st;
}

ferry_status ferry_sync_start(ferry_sync *s, ferry_sync_done_fn done, void *arg, ferry_error *err) {
  if (s->started) return ferry_error_set(err, FERRY_EINVAL, "the sync has already started");
  s->started = true;
  s->done = done;
  s->done_arg = arg;
  s->nphases = ferry_projector_phases(s->p);
  ferry_status st = ferry_projector_group_begin(s->p, err);
  if (st) return st;
  new_pass(s);
  event_active(s->kick, EV_TIMEOUT, 0);
  return FERRY_OK;
}

void ferry_sync_stop(ferry_sync *s) {
  if (!s || s->stopping || s->ended) return;
  s->stopping = true;
  ferry_cloud_wind_down(s->c); /* calls waiting to retry end now, as UNKNOWN */
  if (s->started) event_active(s->kick, EV_TIMEOUT, 0);
}

void ferry_sync_destroy(ferry_sync *s) {
  if (!s) return;
  drop_queue(s);
  strmap_free(&s->handled, NULL);
  ferry_plan_cursor_reset(&s->cursor);
  if (s->started && !s->ended) { /* outcomes recorded so far are still true */
    ferry_error err;
    ferry_projector_group_end(s->p, &err);
  }
  if (s->flush) event_free(s->flush);
  if (s->kick) event_free(s->kick);
  free(s->customer);
  free(s);
}

typedef struct run_state {
  struct event_base *base;
  bool done;
  ferry_status st;
  ferry_sync_report rep;
  ferry_error err;
} run_state;

static void on_run_done(void *arg, ferry_status st, const ferry_sync_report *rep,
                        const ferry_error *err) {
  run_state *r = arg;
  r->done = true;
  r->st = st;
  r->rep = *rep;
  r->err = *err;
  event_base_loopbreak(r->base);
}

ferry_status ferry_sync_run(struct event_base *base, const char *customer, ferry_projector *p,
                            ferry_cloud *c, const ferry_sync_opts *opts, ferry_sync_report *report,
                            ferry_error *err) {
  run_state r = {base, false, FERRY_OK, {0}, {FERRY_OK, ""}};
  ferry_sync *s = NULL;
  ferry_status st = ferry_sync_create(&s, base, customer, p, c, opts, err);
  if (st) goto done;
  if ((st = ferry_sync_start(s, on_run_done, &r, err))) goto done;
  while (!r.done)
    if (event_base_dispatch(base) != 0 && !r.done) {
      st = ferry_error_set(err, FERRY_EINTERNAL, "the event loop ran dry during a sync");
      goto done;
    }
  st = r.st;
  if (st && err) *err = r.err;
  if (report) *report = r.rep;
done:
  ferry_sync_destroy(s);
  return st;
}
