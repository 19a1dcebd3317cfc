/*
 * The applier (SPEC §3): a REST client for the customer's cloud, and the sync
 * driver that turns a projector's plan into calls and records every outcome.
 *
 * Both run on the caller's libevent loop and never block it on the network:
 * libcurl's multi-socket API is mapped onto the event_base (sockets and
 * timers, as in curl's docs/examples/hiperfifo.c), and backoff waits and rate
 * limiting are event timers. Callbacks run on the loop thread. Nothing here
 * is thread-safe; one loop owns each object.
 *
 * Layers:
 *   ferry_cloud  one customer's client: connection reuse, at most
 *                `concurrency` requests on the wire, at most `rate_limit`
 *                requests a second, retries with backoff, and the create
 *                protocol that makes one cloud record per entity (an
 *                Idempotency-Key, and a find by external key first whenever an
 *                earlier attempt may have reached the cloud).
 *   ferry_sync   runs the projector's plan phase by phase through a client
 *                and records each finished call with ferry_projector_record.
 *
 * Tokens are copied into the client and only ever put into an Authorization
 * header; no message, log or result carries them.
 */
#ifndef FERRY_CLOUD_H
#define FERRY_CLOUD_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "ferry/config.h"
#include "ferry/ferry.h"
#include "ferry/projector.h"

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

/* ------------------------------------------------------------- client --- */

typedef struct ferry_cloud ferry_cloud;

/* The largest response body kept (a larger one fails that request). */
#define FERRY_CLOUD_MAX_RESPONSE (1024u * 1024)
/* Retry-After values above this many seconds are cut to it. */
#define FERRY_CLOUD_MAX_RETRY_AFTER_S 300

typedef struct ferry_cloud_opts {
  const char *base_url;           /* required: "http://host:port/prefix" (copied) */
  const char *token;              /* bearer token value, or NULL (copied, never logged) */
  const char *id_field;           /* default "id" */
  const char *external_key_field; /* default "legacy_key" */
  int concurrency;                /* requests on the wire at once, default 16 */
  int timeout_ms;                 /* per attempt, default 10000 */
  int max_attempts;               /* per call (finds included), default 8 */
  double rate_limit;              /* requests per second, 0: unlimited */
  int backoff_base_ms;            /* first retry waits up to this, default 100 */
  int backoff_cap_ms;             /* no backoff wait above this, default 10000 */
  uint64_t seed;                  /* jitter generator seed; 0: from the clock */
} ferry_cloud_opts;

/* Fills o with the defaults above (base_url and token NULL). */
void ferry_cloud_opts_init(ferry_cloud_opts *o);

/* Creates a client on base (borrowed; must outlive the client). opts and its
 * strings are copied. FERRY_EINVAL for a missing base_url or a bad value,
 * FERRY_ENOMEM, FERRY_ECLOUD when libcurl cannot be set up. */
ferry_status ferry_cloud_create(ferry_cloud **out, struct event_base *base,
                                const ferry_cloud_opts *opts, ferry_error *err);

/* Creates the client for customer from the configuration (SPEC §6): its base
 * URL (with "{customer}" replaced), the token from the variable it names, and
 * the cloud.* settings. FERRY_EAUTH when the configuration names a token
 * variable that is not set (the message names the variable, never a value). */
ferry_status ferry_cloud_create_for(ferry_cloud **out, struct event_base *base,
                                    const ferry_config *cfg, const char *customer,
                                    ferry_error *err);

/* Frees the client. Calls still running are abandoned without their callbacks
 * (use ferry_cloud_wind_down and wait for them first to keep their results).
 * Accepts NULL. Never call it from inside one of its callbacks. */
void ferry_cloud_destroy(ferry_cloud *c);

typedef enum ferry_cloud_op {
  FERRY_CLOUD_CREATE = 1, /* POST base+endpoint */
  FERRY_CLOUD_PATCH = 2,  /* PATCH base+endpoint/ID */
  FERRY_CLOUD_DELETE = 3, /* DELETE base+endpoint/ID */
  FERRY_CLOUD_FIND = 4    /* GET base+endpoint?external_key_field=VALUE */
} ferry_cloud_op;

/* One call. Everything is copied by ferry_cloud_submit. */
typedef struct ferry_cloud_request {
  ferry_cloud_op op;
  const char *endpoint;        /* "/contacts" */
  const char *id;              /* PATCH/DELETE: the cloud id as JSON text ("7", "\"ab\"");
                                  a DELETE without one deletes what a find by
                                  external_key finds */
  const json_t *body;          /* CREATE: the full payload; PATCH: the changed fields */
  const char *external_key;    /* CREATE, FIND: the external key's value "entity/key" */
  const char *idempotency_key; /* CREATE: the same for every attempt of one create */
  bool resume;                 /* CREATE: an earlier attempt may have reached the cloud */
} ferry_cloud_request;

/* How a call ended. Valid only during the callback. */
typedef struct ferry_cloud_result {
  ferry_outcome outcome; /* OK, ADOPTED (create found by external key), GONE (404 on
                            PATCH/DELETE), FAILED (refused), UNKNOWN (gave up) */
  int http_status;       /* of the last answer, 0 if none */
  unsigned attempts;     /* HTTP requests sent for the call, finds included */
  unsigned retries;      /* of them, repeats after a failed attempt */
  bool exhausted;        /* UNKNOWN: every attempt failed with a retryable error */
  bool unauthorized;     /* UNKNOWN: the cloud answered 401 (a token problem) */
  bool cancelled;        /* UNKNOWN: ferry_cloud_wind_down stopped it */
  const char *id;        /* CREATE/ADOPTED: the record's id as JSON text */
  const json_t *found;   /* FIND: array of the records whose external key matches */
  const char *error;     /* FAILED/UNKNOWN, or ADOPTED with extra matches: why */
  const char *method;    /* of the last request */
  const char *path;      /* of the last request, without the base URL */
  int64_t latency_us;    /* submit to completion */
} ferry_cloud_result;

typedef void (*ferry_cloud_done_fn)(void *arg, const ferry_cloud_result *r);

/*
 * Starts a call; done(arg, result) runs on the loop once it has ended, never
 * from inside ferry_cloud_submit. Retryable failures (transport errors, 408,
 * 429, 5xx) are retried up to max_attempts with exponential backoff and full
 * jitter, waiting at least Retry-After. A CREATE whose earlier attempt may
 * have reached the cloud (resume, or a timeout, dropped connection or 5xx)
 * looks the record up by external key first and adopts a match (the lowest id
 * when there are several; error then names the others). FERRY_EINVAL for a
 * malformed request, FERRY_ENOMEM; then done is never called.
 */
ferry_status ferry_cloud_submit(ferry_cloud *c, const ferry_cloud_request *req,
                                ferry_cloud_done_fn done, void *arg, ferry_error *err);

/* Stops the client making new attempts: calls queued or waiting to retry end
 * (soon, from the loop) as UNKNOWN with cancelled set, calls with a request on
 * the wire end with its answer, or UNKNOWN if that answer asks for a retry.
 * Submitting fails with FERRY_ECLOUD until every call has ended; then the
 * client takes calls again. */
void ferry_cloud_wind_down(ferry_cloud *c);

/* Calls not yet ended. */
unsigned ferry_cloud_pending(const ferry_cloud *c);

/* Requests on the wire at most (the configured concurrency). */
unsigned ferry_cloud_concurrency(const ferry_cloud *c);

typedef struct ferry_cloud_stats {
  uint64_t calls;            /* calls ended */
  uint64_t requests;         /* HTTP requests sent */
  uint64_t retries;          /* requests that repeated a failed attempt */
  uint64_t finds;            /* lookups by external key made inside creates */
  uint64_t connects;         /* new connections opened (sum of CURLINFO_NUM_CONNECTS) */
  uint64_t transport_errors; /* requests that got no HTTP answer */
  uint64_t by_status[600];   /* answers by HTTP status (0..599) */
} ferry_cloud_stats;

/* Copies the client's counters into *s. */
void ferry_cloud_stats_get(const ferry_cloud *c, ferry_cloud_stats *s);

/* The Idempotency-Key of one create: lowercase hex of XXH3-128 over
 * customer \0 entity \0 key \0 generation (decimal). out gets 32 digits and a NUL. */
void ferry_cloud_idempotency_key(char out[33], const char *customer, const char *entity,
                                 const char *key, uint64_t generation);

/* --------------------------------------------------------------- sync --- */

typedef struct ferry_sync ferry_sync;

typedef struct ferry_sync_report {
  uint64_t calls;      /* calls finished (HTTP or not) */
  uint64_t created;    /* CREATE answered OK */
  uint64_t adopted;    /* CREATE found by external key */
  uint64_t patched;    /* PATCH OK */
  uint64_t deleted;    /* DELETE OK, or 404 (already gone) */
  uint64_t gone;       /* PATCH answered 404: re-created on a later pass */
  uint64_t failed;     /* refused by the cloud: the entity is marked failed */
  uint64_t unknown;    /* gave up without knowing (left dirty for the next sync) */
  uint64_t unchanged;  /* NONE: dirty but equal, recorded without a call */
  uint64_t waiting;    /* WAIT at the end: references an entity not in the cloud */
  uint64_t duplicates; /* ADOPTED with more than one match (must stay 0) */
  unsigned passes;
  bool stopped;            /* ferry_sync_stop ended it early */
  ferry_cloud_stats cloud; /* the client's counters at the end */
} ferry_sync_report;

/* Called after each finished call has been recorded (for progress and -v):
 * c the call, r its result (NULL for NONE/WAIT, which make no request). */
typedef void (*ferry_sync_call_fn)(void *arg, const ferry_call *c, const ferry_call_result *r);

typedef struct ferry_sync_opts {
  unsigned max_passes; /* plan/apply passes at most, default 16 */
  ferry_sync_call_fn on_call;
  void *on_call_arg;
} ferry_sync_opts;

/* Called once when the sync has ended: st is FERRY_OK when the cloud matches
 * the plan (FAILED entities aside: see report->failed), FERRY_ECLOUD when the
 * cloud stayed unreachable or kept failing, FERRY_EAUTH when it refused the
 * token, or the projector's error (err has the detail). */
typedef void (*ferry_sync_done_fn)(void *arg, ferry_status st, const ferry_sync_report *report,
                                   const ferry_error *err);

/* A sync of customer's plan (p, opened for that customer) through client c
 * on base (all borrowed; they must outlive it). opts may be NULL. The
 * customer names the Idempotency-Keys. */
ferry_status ferry_sync_create(ferry_sync **out, struct event_base *base, const char *customer,
                               ferry_projector *p, ferry_cloud *c, const ferry_sync_opts *opts,
                               ferry_error *err);

/* Starts it: passes over ferry_projector_phases in order, each phase planned
 * in bounded chunks and drained before the next, at most `concurrency` calls
 * in flight and at most one per entity, until a pass plans nothing to send.
 * done runs on the loop when it ends (never from inside this call). */
ferry_status ferry_sync_start(ferry_sync *s, ferry_sync_done_fn done, void *arg, ferry_error *err);

/* Graceful stop: sends nothing new; calls on the wire finish and are
 * recorded, calls waiting to retry are recorded as UNKNOWN; then done runs.
 * Safe to call more than once, and from the callbacks. */
void ferry_sync_stop(ferry_sync *s);

/* Frees the sync; accepts NULL. Stop it and wait for done first, or calls
 * still running are abandoned unrecorded (their entities stay dirty). */
void ferry_sync_destroy(ferry_sync *s);

/* Blocking helper for the CLI: runs a sync on base until it ends, and returns
 * its status; *report (may be NULL) gets the totals. */
ferry_status ferry_sync_run(struct event_base *base, const char *customer, ferry_projector *p,
                            ferry_cloud *c, const ferry_sync_opts *opts, ferry_sync_report *report,
                            ferry_error *err);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_CLOUD_H */
