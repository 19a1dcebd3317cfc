/* ferry-cloudsim faults: which misfortune (if any) befalls a request, and the held answers that
 * latency and dropped connections need.
 *
 * The draw is one uniform number from a seeded generator per collection request, cut into slices
 * of the configured rates (drop, fail, throttle, commit-then-drop, in that order), so the same
 * seed and the same request sequence give the same faults. Held answers wait on an event timer;
 * nothing ever blocks the loop.
 */
#ifndef CLOUDSIM_FAULTS_H
#define CLOUDSIM_FAULTS_H

#include <event2/event.h>
#include <event2/http.h>
#include <stdint.h>

#include "options.h"

typedef enum {
  CS_FAULT_NONE = 0,
  CS_FAULT_DROP,        /* close the connection, do nothing */
  CS_FAULT_FAIL,        /* answer 500 or 503, do nothing */
  CS_FAULT_THROTTLE,    /* answer 429 with Retry-After, do nothing */
  CS_FAULT_COMMIT_DROP, /* do the work, then close the connection without an answer */
} cs_fault;

typedef struct cs_faults {
  double drop, fail, throttle, commit_drop;
  int any; /* whether any rate is non-zero; no draw is made otherwise */
  uint64_t rng;
} cs_faults;

void cs_faults_init(cs_faults *f, const cs_config *cfg);
/* Draws the fault for one request; for CS_FAULT_FAIL *fail_status is 500 or 503. */
cs_fault cs_faults_draw(cs_faults *f, int *fail_status);

/* A request whose answer (or drop) is due later. status 0 means: close the connection instead of
 * answering. The owner's deliver callback runs when it is due; it must send or drop the request. */
typedef struct cs_held cs_held;
typedef void (*cs_deliver_fn)(void *owner, struct evhttp_request *req, int status, void *call);

typedef struct cs_holdq {
  struct event_base *base;
  cs_deliver_fn deliver;
  void *owner;
  cs_held *head; /* every held request, so shutdown can free them */
} cs_holdq;

void cs_holdq_init(cs_holdq *q, struct event_base *base, cs_deliver_fn deliver, void *owner);
/* Holds req for ms milliseconds, then calls deliver(owner, req, status, call). call is the
 * owner's per-request data and is handed back untouched. Returns -1 when out of memory (the
 * caller then answers at once). */
int cs_holdq_add(cs_holdq *q, struct evhttp_request *req, int status, unsigned long ms, void *call);
/* At shutdown: forgets every held request without answering, freeing what the server would not
 * (requests whose client already went away). release(owner, call) lets the owner free call. */
void cs_holdq_clear(cs_holdq *q, void (*release)(void *owner, void *call));

/* Closes req's connection without an answer, freeing req. Call only from outside libevent's own
 * request callback (a timer), since it frees the connection that is running the callback. */
void cs_drop_request(struct evhttp_request *req);

#endif
