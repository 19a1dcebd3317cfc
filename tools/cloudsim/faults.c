/* ferry-cloudsim faults: the seeded fault draw and the queue of held answers.
 *
 * Held answers: with --latency-ms every collection answer waits on its own timer; a drop (with or
 * without latency) also goes through a timer of 0 ms, because closing a connection from inside
 * the request callback would free the connection libevent is still running. While an answer is
 * held the client may hang up; libevent then detaches the request from its connection and leaves
 * it to us, so delivery checks for a detached request and frees it itself.
 */
#include "faults.h"
#include "rng.h"

#include <stdlib.h>

struct cs_held {
  cs_holdq *q;
  struct evhttp_request *req;
  int status;
  void *call;
  struct event *timer;
  cs_held *prev, *next;
};

void cs_faults_init(cs_faults *f, const cs_config *cfg) {
  f->drop = cfg->drop_rate;
  f->fail = cfg->fail_rate;
  f->throttle = cfg->throttle_rate;
  f->commit_drop = cfg->commit_drop_rate;
  f->any = f->drop > 0 || f->fail > 0 || f->throttle > 0 || f->commit_drop > 0;
  /* A different constant from the uuid stream's so the two do not move in lockstep. */
  f->rng = (uint64_t)cfg->seed ^ 0x5deece66dULL;
}

cs_fault cs_faults_draw(cs_faults *f, int *fail_status) {
  cs_fault fault = CS_FAULT_NONE;
  uint64_t bits;
  double u, edge;

  if (!f->any) goto done;
  bits = cs_rng_next(&f->rng);
  u = (double)(bits >> 11) * 0x1.0p-53; /* uniform in [0,1) */
  /* A rate of 1 must always fire: u < 1 holds for every draw. */
  if (u < (edge = f->drop)) {
    fault = CS_FAULT_DROP;
  } else if (u < (edge += f->fail)) {
    fault = CS_FAULT_FAIL;
    *fail_status = (bits & 1) ? 503 : 500;
  } else if (u < (edge += f->throttle)) {
    fault = CS_FAULT_THROTTLE;
  } else if (u < (edge += f->commit_drop)) {
    fault = CS_FAULT_COMMIT_DROP;
  }
done:
  return fault;
}

void cs_drop_request(struct evhttp_request *req) {
  struct evhttp_connection *evcon = evhttp_request_get_connection(req);
  if (evcon)
    evhttp_connection_free(evcon); /* frees req with it */
  else
    evhttp_request_free(req); /* the client left first; req is ours alone */
}

void cs_holdq_init(cs_holdq *q, struct event_base *base, cs_deliver_fn deliver, void *owner) {
  q->base = base;
  q->deliver = deliver;
  q->owner = owner;
  q->head = NULL;
}

static void unlink_held(cs_held *h) {
  if (h->prev)
    h->prev->next = h->next;
  else
    h->q->head = h->next;
  if (h->next) h->next->prev = h->prev;
}

static void on_due(evutil_socket_t fd, short what, void *arg) {
  cs_held *h = arg;
  (void)fd;
  (void)what;
  unlink_held(h);
  event_free(h->timer);
  h->q->deliver(h->q->owner, h->req, h->status, h->call);
  free(h);
}

int cs_holdq_add(cs_holdq *q, struct evhttp_request *req, int status, unsigned long ms,
                 void *call) {
  int rc = -1;
  struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
  cs_held *h = calloc(1, sizeof *h);

  if (!h) goto done;
  h->timer = evtimer_new(q->base, on_due, h);
  if (!h->timer || evtimer_add(h->timer, &tv) != 0) goto done;
  h->q = q;
  h->req = req;
  h->status = status;
  h->call = call;
  h->next = q->head;
  if (q->head) q->head->prev = h;
  q->head = h;
  h = NULL;
  rc = 0;
done:
  if (h && h->timer) event_free(h->timer);
  free(h);
  return rc;
}

void cs_holdq_clear(cs_holdq *q, void (*release)(void *owner, void *call)) {
  while (q->head) {
    cs_held *h = q->head;
    q->head = h->next;
    event_free(h->timer);
    /* Requests still on a connection are freed with it by evhttp_free; detached ones are not. */
    if (!evhttp_request_get_connection(h->req)) evhttp_request_free(h->req);
    release(q->owner, h->call);
    free(h);
  }
}
