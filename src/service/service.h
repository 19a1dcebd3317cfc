/*
 * ferryd's internals, shared by the files of src/service/: the server
 * (struct svc), a customer's state (struct svc_cust), and what each file
 * offers the others. Everything here belongs to the loop thread unless a
 * comment says otherwise; the worker threads only touch the jobs handed to
 * them (worker.c), and the store's commit thread only posts completions.
 *
 *   main.c     arguments, configuration and reload, signals, start and stop
 *   log.c      structured JSON logs on stderr
 *   worker.c   worker threads and the completion queue back to the loop
 *   sched.c    the per-customer state machine: runs (fold, then apply)
 *   ingest.c   decode + durable append of a batch (HTTP and feeds share it)
 *   http.c     the HTTP server: routes, authentication, replies
 *   admin.c    status, history, rewind/resume/replay, healthz
 *   feed.c     pull mode: long-polling a customer's feed URL with libcurl
 *   metrics.c  counters and the Prometheus text of GET /metrics
 */
#ifndef FERRY_SERVICE_H
#define FERRY_SERVICE_H

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/strmap.h"
#include "ferry/change.h"
#include "ferry/cloud.h"
#include "ferry/config.h"
#include "ferry/ferry.h"
#include "ferry/mapping.h"
#include "ferry/projector.h"
#include "ferry/store.h"

struct event;
struct event_base;
struct evhttp;
struct evhttp_bound_socket;
struct evhttp_request;
struct evbuffer;

typedef struct svc svc;
typedef struct svc_cust svc_cust;

/* The id ferryd writes its health probe under; refused as a customer. */
#define SVC_RESERVED_CUSTOMER "_ferryd"
/* The meta names ferryd keeps per customer (beside the projector's). */
#define SVC_META_FEED_CURSOR "ferryd.feed_cursor"
#define SVC_META_HEALTH "ferryd.health"
/* Tokens longer than this are refused (no real token is that long). */
#define SVC_TOKEN_MAX 4096
/* The largest feed cursor kept. */
#define SVC_CURSOR_MAX 1024

/* ------------------------------------------------------------ log.c --- */

typedef enum svc_level { SVC_DEBUG = 0, SVC_INFO = 1, SVC_WARN = 2, SVC_ERROR = 3 } svc_level;

/* Sets the lowest level written (default SVC_INFO). */
void svc_log_set_level(svc_level lv);
/* Parses "debug", "info", "warn", "error"; false if unknown. */
bool svc_log_parse_level(const char *name, svc_level *out);
/* Writes one line {"ts","level","msg","customer"?, fields...}. fields (may be
 * NULL) is taken: its members are added, then it is released. customer may
 * be NULL. Thread-safe: one write(2) a line. Never pass a token. */
void svc_log(svc_level lv, const char *customer, json_t *fields, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* --------------------------------------------------------- worker.c --- */

/*
 * A unit of work: work() runs on a worker thread (NULL: none), then done()
 * on the loop thread. The job is the caller's; done() usually frees it.
 * Embed it as the first member of a bigger struct.
 */
typedef struct svc_job {
  struct svc_job *next;
  void (*work)(struct svc_job *j);
  void (*done)(struct svc_job *j);
  bool submitted; /* by svc_workers_submit (counted in pending) */
} svc_job;

typedef struct svc_workers svc_workers;

/* Starts n threads and the loop's wake-up event on base. */
ferry_status svc_workers_start(svc_workers **out, struct event_base *base, unsigned n,
                               ferry_error *err);
/* Queues j for a worker (loop thread). */
void svc_workers_submit(svc_workers *w, svc_job *j);
/* From any thread: queues j's done() for the loop and wakes it. */
void svc_workers_post(svc_workers *w, svc_job *j);
/* Jobs submitted whose done() has not run yet (loop thread). */
unsigned svc_workers_pending(const svc_workers *w);
/* Stops and joins the threads (after pending reached 0), frees w; NULL ok. */
void svc_workers_stop(svc_workers *w);

/* ------------------------------------------------------- metrics.c --- */

#define SVC_HIST_BUCKETS 14
typedef struct svc_hist {
  uint64_t bucket[SVC_HIST_BUCKETS]; /* cumulative counts are computed when rendered */
  uint64_t count;
  double sum; /* seconds */
} svc_hist;

enum { SVC_M_POST, SVC_M_PATCH, SVC_M_DELETE, SVC_M_GET, SVC_M_OTHER, SVC_M_COUNT };

typedef struct svc_metrics {
  uint64_t http[6]; /* answers by class: 1xx..5xx, [0] none */
  uint64_t ingest_requests, ingest_rejected;
  uint64_t changes, duplicates;     /* across customers */
  svc_hist ingest_latency;          /* POST changes: request to reply */
  uint64_t calls[SVC_M_COUNT][600]; /* cloud calls by method, status (0: no answer) */
  svc_hist call_latency;            /* cloud calls, submit to completion */
  uint64_t runs, run_failures;      /* runs ended, of which failed (backoff) */
  unsigned runs_in_progress;
  unsigned concurrent_max; /* the most runs one customer ever had at once */
  uint64_t feed_polls, feed_batches, feed_errors;
} svc_metrics;

/* Adds one observation in seconds. */
void svc_hist_observe(svc_hist *h, double seconds);
/* Counts a finished cloud call. */
void svc_metrics_call(svc_metrics *m, const char *method, int status, int64_t latency_us);
/* The Prometheus text exposition of every counter, into out. */
void svc_metrics_render(svc *s, struct evbuffer *out);

/* ----------------------------------------------------------- conf --- */

/* One loaded configuration with its mapping and secrets. Reference-counted
 * on the loop thread: a run holds the one it started with, so SIGHUP can
 * swap in a new one while runs finish on the old. */
typedef struct svc_conf {
  unsigned refs;
  ferry_config *cfg;
  ferry_mapping *map;
  char *admin_token; /* NULL: none set (only with --insecure) */
  size_t admin_len;
} svc_conf;

svc_conf *svc_conf_ref(svc_conf *c);
void svc_conf_unref(svc_conf *c);

/* --------------------------------------------------------- sched.c --- */

typedef enum svc_cust_state {
  SVC_IDLE = 0,      /* nothing to do; costs nothing */
  SVC_SCHEDULED = 1, /* waiting for a run slot, or for its backoff timer */
  SVC_RUNNING = 2    /* a run (fold, then apply) or an admin operation */
} svc_cust_state;

typedef enum svc_op_kind {
  SVC_OP_REWIND = 1,
  SVC_OP_RESUME = 2,
  SVC_OP_REPLAY = 3,
  SVC_OP_RETRY = 4 /* retry-failed */
} svc_op_kind;

/* An admin operation that changes the projection: it waits until the
 * customer is not running, then runs on a worker like a run would. */
typedef struct svc_op {
  svc_job job;
  struct svc_op *next;
  svc_cust *c;
  svc_conf *conf;
  svc_op_kind kind;
  uint64_t to_seq;
  bool hold;
  struct evhttp_request *req;
  ferry_projector *old_proj; /* the customer's, closed by the worker */
  ferry_store *store;
  ferry_status st;
  ferry_error err;
  ferry_projection_info info;
  uint64_t retried; /* SVC_OP_RETRY: failed entities marked dirty again */
  int64_t started_us;
} svc_op;

typedef struct svc_feed svc_feed;

struct svc_cust {
  char id[FERRY_CUSTOMER_MAX + 1];
  svc *s;
  svc_cust_state state;
  bool rerun;      /* something arrived during the run: run once more */
  bool queued;     /* on the ready list */
  bool in_backoff; /* SCHEDULED, waiting for timer */
  svc_cust *ready_next, *done_next;
  unsigned active, active_max; /* runs at once: must never pass 1 */
  bool fresh;                  /* running, and in its first second (counts against max_runs) */
  struct event *timer;         /* backoff, or a run's first second; created on first use */
  unsigned failures;           /* consecutive failed runs */
  int64_t backoff_until_us;
  int64_t run_started_us;
  /* the run: projector and cloud client stay open between runs */
  svc_conf *run_conf; /* held while running */
  ferry_projector *proj;
  svc_conf *proj_conf; /* the configuration proj was opened with */
  ferry_cloud *cloud;
  svc_conf *cloud_conf;
  ferry_sync *sync;
  ferry_status sync_st; /* how the last sync ended */
  ferry_error sync_err;
  ferry_sync_report sync_rep;
  uint64_t run_folded;
  unsigned refusals_logged; /* this run's refused entities logged so far */
  bool blocked;             /* the mapping changed: refuses to run until replayed */
  svc_conf *blocked_conf;   /* the configuration that blocked it */
  char blocked_msg[512];
  svc_op *ops_head, *ops_tail; /* admin operations waiting */
  /* configuration */
  bool configured;
  char *ingest_token; /* copied from its variable; wiped on free */
  size_t ingest_len;
  svc_feed *feed;
  /* what status and metrics show */
  uint64_t appended, duplicates, head_seq, folded_seq, dirty, failed, runs, run_failures;
  bool held;
  char last_error[256];
};

/* Sets the customer table and the dispatcher up. */
ferry_status svc_sched_init(svc *s, ferry_error *err);
/* Finds a customer, or adds it (idle) when create is set; NULL if absent,
 * invalid, reserved or out of memory. */
svc_cust *svc_cust_get(svc *s, const char *id, bool create);
/* Something new for c (an append, an operation, a backoff expiry): schedule
 * a run, or ask the running one for a follow-up. */
void svc_sched_kick(svc_cust *c);
/* Queues an admin operation (taken); it replies to op->req itself. */
void svc_sched_op(svc_cust *c, svc_op *op);
/* Startup: every customer gets one run, which folds what is behind and
 * applies what is dirty (and does nothing else). */
void svc_sched_start_all(svc *s);
/* SIGTERM: no new runs; running syncs stop after their calls in flight. */
void svc_sched_stop(svc *s);
/* After a reload: customers blocked by a mapping get another look. */
void svc_sched_reloaded(svc *s);
/* Frees every customer (after the loop ended). */
void svc_sched_free(svc *s);
const char *svc_cust_state_name(const svc_cust *c);

/* -------------------------------------------------------- ingest.c --- */

typedef struct svc_ingest_result {
  ferry_status st; /* FERRY_OK: durable */
  const ferry_error *err;
  const ferry_batch *batch; /* st == FERRY_EINVAL from the decoder: its error list */
  ferry_append_result res;
} svc_ingest_result;

typedef void (*svc_ingest_fn)(void *arg, const svc_ingest_result *r);

/* Decodes buf (len bytes, which must stay valid until fn runs) as fmt for
 * customer c, appends it whole or not at all, and calls fn on the loop once
 * it is durable or has failed. Small batches are decoded on the loop, big
 * ones on a worker. Updates counters and schedules c. Returns FERRY_OK when
 * fn will be called (possibly before this returns, for an invalid batch);
 * FERRY_ENOMEM otherwise, and then fn is never called. */
ferry_status svc_ingest_start(svc *s, svc_cust *c, ferry_format fmt, const char *buf, size_t len,
                              svc_ingest_fn fn, void *arg);
/* The POST /v1/customers/C/changes handler (http.c has authenticated it). */
void svc_ingest_http(svc *s, svc_cust *c, struct evhttp_request *req);

/* ---------------------------------------------------------- http.c --- */

ferry_status svc_http_start(svc *s, ferry_error *err);
/* Stops accepting connections (SIGTERM); requests in progress go on. */
void svc_http_stop_accepting(svc *s);
void svc_http_free(svc *s);
/* Replies with a JSON body (taken) and status code. */
void svc_reply_json(svc *s, struct evhttp_request *req, int code, json_t *body);
/* Replies {"error": msg} with code. */
void svc_reply_error(svc *s, struct evhttp_request *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Replies with body (taken, may be NULL) of the given content type. */
void svc_reply_buf(svc *s, struct evhttp_request *req, int code, const char *ctype,
                   struct evbuffer *body);
/* The HTTP status for a ferry status. */
int svc_http_code(ferry_status st);

/* --------------------------------------------------------- admin.c --- */

void svc_admin_status(svc *s, svc_cust *c, struct evhttp_request *req);
void svc_admin_history(svc *s, svc_cust *c, struct evhttp_request *req);
void svc_admin_op(svc *s, svc_cust *c, svc_op_kind kind, struct evhttp_request *req);
/* The operation's name in its route and answers: "rewind", ..., "retry-failed". */
const char *svc_op_name(svc_op_kind kind);
void svc_admin_healthz(svc *s, struct evhttp_request *req);
/* POST /v1/backup {"dir": "/new/dir"}: ferry_backup on a worker. */
void svc_admin_backup(svc *s, struct evhttp_request *req);
/* Replies to an operation that finished (or was refused) and frees it. */
void svc_admin_op_reply(svc_op *op);

/* ---------------------------------------------------------- feed.c --- */

typedef struct svc_feeds svc_feeds;

ferry_status svc_feeds_create(svc *s, ferry_error *err);
/* Starts, restarts (new URL) or stops c's feed to match its configuration. */
void svc_feed_configure(svc_cust *c, const char *feed_url);
/* SIGTERM: cancels polls; appends in progress finish. */
void svc_feeds_stop(svc *s);
/* Feed appends still in progress. */
unsigned svc_feeds_busy(const svc *s);
void svc_feeds_free(svc *s);
/* Status of c's feed as JSON (new reference), or NULL without one. */
json_t *svc_feed_status(const svc_cust *c);
/* Frees c's feed (svc_sched_free calls it). */
void svc_feed_free(svc_feed *f);

/* ----------------------------------------------------------- svc --- */

typedef struct svc_opts {
  const char *config_path;
  const char *data_dir; /* --data, else the config's, else ./ferry-data */
  bool insecure;
  unsigned workers;      /* worker threads */
  unsigned max_runs;     /* runs in their first second at once (sched.c) */
  int client_timeout_ms; /* HTTP read/write timeout per connection */
  int feed_wait_s;       /* how long a feed may hold a poll */
  bool verbose;          /* one log line per HTTP request */
} svc_opts;

struct svc {
  struct event_base *base;
  svc_opts opts;
  svc_conf *conf; /* the current configuration */
  ferry_store *store;
  svc_workers *workers;
  /* http.c */
  struct evhttp *http;
  struct evhttp_bound_socket *bound;
  char listen_addr[300]; /* host:port actually bound */
  /* sched.c */
  strmap custs; /* id -> svc_cust* */
  svc_cust *ready_head, *ready_tail;
  svc_cust *done_head; /* syncs that ended, to finish from the dispatcher */
  struct event *dispatch;
  unsigned running; /* customers RUNNING */
  unsigned fresh;   /* of them, runs in their first second */
  /* admin.c: the health probe in flight and the requests waiting for it */
  struct health_probe *health;
  /* feed.c */
  svc_feeds *feeds;
  /* lifecycle */
  bool stopping;
  unsigned pending_ingests; /* batches on their way to the log */
  svc_metrics metrics;
  int64_t started_us;
};

/* Stop when nothing is in progress any more (called whenever something ends). */
void svc_check_stopped(svc *s);

/* Constant-time comparison of a presented token with a secret. */
bool svc_token_equal(const char *given, size_t given_len, const char *secret, size_t secret_len);

/* Monotonic microseconds. */
int64_t svc_now_us(void);

#endif /* FERRY_SERVICE_H */
