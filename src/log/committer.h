/*
 * The committer's private pieces shared between its two files: the queued
 * request (append.c builds and waits on them, committer.c runs them).
 */
#ifndef FERRY_LOG_COMMITTER_H
#define FERRY_LOG_COMMITTER_H

#include <pthread.h>

#include "log/store_impl.h"

typedef struct cust cust;

/* One append request, queued until the committer has written or failed it. */
typedef struct append_req {
  struct append_req *next;
  key_prefix p;
  const ferry_change_ref *changes; /* borrowed from the caller */
  size_t n;
  /* Async requests: cb runs on the commit thread, then the committer frees the request. */
  ferry_append_cb cb;
  void *arg;
  /* Sync requests live on the caller's stack: the committer sets done under
   * the committer's mutex and signals done_cv; the caller then returns. */
  pthread_cond_t *done_cv;
  bool done;
  /* The outcome. */
  ferry_status st;
  ferry_append_result res;
  ferry_error err;
  cust *cu; /* the customer's head cache entry, while the committer works on it */
} append_req;

/* Queues r (the committer takes ownership of an async request only on FERRY_OK). */
ferry_status committer_enqueue(committer *c, append_req *r, ferry_error *err);

/* For a sync request: runs it on the calling thread if the committer is
 * idle, else queues it. Either way, committer_wait then returns at once or
 * when it is done. */
ferry_status committer_run_or_enqueue(committer *c, append_req *r, ferry_error *err);

/* Blocks until a sync request is done. */
void committer_wait(committer *c, append_req *r);

#endif /* FERRY_LOG_COMMITTER_H */
