/*
 * Internal: the cloud client's state, shared by client.c (calls, queue, rate
 * limit, retries), request.c (URLs, headers, easy-handle setup) and answer.c
 * (what an HTTP answer or a transport error means for a call).
 */
#ifndef FERRY_CLOUD_CLIENT_INT_H
#define FERRY_CLOUD_CLIENT_INT_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>

#include "cloud/curl_loop.h"
#include "ferry/cloud.h"

typedef enum op_state {
  OP_QUEUED,  /* waiting for a free slot (and the rate limit) */
  OP_ON_WIRE, /* a request is in flight */
  OP_WAITING, /* backoff timer running before the next attempt */
  OP_ENDING,  /* ended; the result is delivered from the loop */
  OP_IDLE     /* between states (being decided) */
} op_state;

/* The next request a call makes. */
typedef enum op_step {
  STEP_MAIN, /* the call itself: POST, PATCH, DELETE or the FIND's GET */
  STEP_FIND, /* CREATE (and DELETE without an id): look the record up by external key */
  STEP_FIX   /* CREATE: patch an adopted record to the payload we meant to post */
} op_step;

/* A response body, capped at FERRY_CLOUD_MAX_RESPONSE. */
typedef struct resp_buf {
  char *data;
  size_t len, cap;
  bool over; /* the answer was larger than the cap */
} resp_buf;

typedef struct cloud_op {
  ferry_cloud *c;
  struct cloud_op *prev, *next; /* every live call, for wind-down and destroy */
  struct cloud_op *qnext;       /* the ready queue */
  op_state state;
  op_step step;
  ferry_cloud_op kind;
  char *url_main;     /* full URL of the main request */
  char *url_find;     /* CREATE/FIND: the lookup URL */
  char *body;         /* CREATE/PATCH: the JSON text sent */
  char *fix_body;     /* STEP_FIX: the fields the adopted record lacks */
  char *url_fix;      /* STEP_FIX: the adopted record's URL */
  char *external_key; /* CREATE/FIND, and DELETE without an id */
  char *endpoint;
  json_t *to_delete;                 /* DELETE without an id: the ids its lookup found */
  size_t delete_next;                /* the next of them to delete */
  struct curl_slist *create_headers; /* CREATE: the shared ones plus Idempotency-Key */
  bool maybe_committed;              /* CREATE: an attempt may have reached the cloud */
  unsigned attempts, failures, retries;
  unsigned sends;      /* times curl started sending the current request */
  bool resend_refused; /* curl wanted to repeat a POST on a new connection */
  struct event *timer; /* backoff waits and deferred ends */
  CURL *easy;          /* while on the wire */
  resp_buf resp;
  char errbuf[CURL_ERROR_SIZE];
  int64_t started_us;
  /* the result being built */
  ferry_outcome outcome;
  int http_status;
  bool exhausted, unauthorized, cancelled;
  char *id; /* JSON text */
  json_t *found;
  char error[512];
  bool note; /* error holds a note for a success (extra records found) */
  ferry_cloud_done_fn done;
  void *arg;
} cloud_op;

struct ferry_cloud {
  struct event_base *base;
  curl_loop *loop;
  char *base_url; /* without a trailing '/' */
  size_t base_len;
  char *auth_header; /* "Authorization: Bearer ..." or NULL; wiped on destroy */
  char *id_field;
  char *ext_field;
  char *ext_field_enc;          /* URL-encoded, for the lookup's query */
  struct curl_slist *hdr_plain; /* GET, DELETE */
  struct curl_slist *hdr_json;  /* PATCH, and the start of every create's list */
  int concurrency, timeout_ms, max_attempts, backoff_base_ms, backoff_cap_ms;
  double rate_limit;
  int64_t next_send_us; /* rate limit: no request before this (monotonic) */
  struct event *rate_timer;
  uint64_t rng;
  CURL **pool; /* idle easy handles, up to concurrency */
  int npool;
  cloud_op *qhead, *qtail;
  cloud_op *ops; /* every live call */
  unsigned pending;
  int on_wire;
  bool winding_down;
  ferry_cloud_stats stats;
};

/* ---- request.c ---- */

/* Builds op's URLs (and a create's header list) from req. */
ferry_status request_prepare(ferry_cloud *c, cloud_op *op, const ferry_cloud_request *req,
                             ferry_error *err);
/* Sets easy up for op's next request. */
ferry_status request_setup(ferry_cloud *c, cloud_op *op, CURL *easy, ferry_error *err);
/* Points a DELETE without an id at the next record its lookup found. */
ferry_status request_delete_next(ferry_cloud *c, cloud_op *op, ferry_error *err);
/* Points STEP_FIX at the adopted record op->id. */
ferry_status request_fix_url(ferry_cloud *c, cloud_op *op, ferry_error *err);
/* The method of op's next request. */
const char *request_method(const cloud_op *op);
/* Builds the shared header lists of the client. */
ferry_status request_headers_init(ferry_cloud *c, const char *token, ferry_error *err);

/* ---- answer.c ---- */

typedef enum verdict {
  V_END,   /* the call is over: op->outcome and friends are set */
  V_RETRY, /* a retryable failure: back off and try again */
  V_NEXT   /* go on at once with the next step (a lookup found nothing: create) */
} verdict;

/* Judges one finished request of op: rc is curl's code, status the HTTP
 * status (0 without an answer). Updates op's step and result fields. */
verdict answer_judge(ferry_cloud *c, cloud_op *op, CURLcode rc, long status);

/* Monotonic microseconds. */
int64_t cloud_now_us(void);

#endif
