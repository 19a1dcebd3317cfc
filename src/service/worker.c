/*
 * Worker threads and the way back to the loop, after redis's src/bio.c:
 * the loop hands a job to the workers through a mutex-protected list; a
 * worker runs its work() and puts the job on the completion list; the first
 * job on an empty completion list wakes the loop with one event_active() on
 * a single event (libevent's pthread support makes that safe from any
 * thread). The loop then takes the whole list at once and runs each done().
 * Threads that never were workers (the store's commit thread) post
 * completions the same way, so the loop has exactly one wake-up source.
 *
 * Nothing here polls: an idle worker sleeps on its condition variable and an
 * idle loop has no timer of ours.
 */
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include "service/service.h"

struct svc_workers {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  svc_job *todo_head, *todo_tail; /* for the workers */
  svc_job *done_head, *done_tail; /* for the loop */
  bool stop;
  pthread_t *threads;
  unsigned nthreads;
  bool locks_ready;
  struct event *wake;
  unsigned pending; /* loop thread: submitted, done() not yet run */
};

static void *worker_main(void *arg) {
  svc_workers *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->todo_head && !w->stop)
      pthread_cond_wait(&w->cv, &w->mu);
    if (!w->todo_head) break; /* stopping and nothing left */
    svc_job *j = w->todo_head;
    w->todo_head = j->next;
    if (!w->todo_head) w->todo_tail = NULL;
    j->next = NULL;
    pthread_mutex_unlock(&w->mu);
    if (j->work) j->work(j);
    svc_workers_post(w, j);
    pthread_mutex_lock(&w->mu);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

/* The loop's side: every completed job, in order. */
static void on_wake(evutil_socket_t fd, short what, void *arg) {
  svc_workers *w = arg;
  (void)fd;
  (void)what;
  pthread_mutex_lock(&w->mu);
  svc_job *j = w->done_head;
  w->done_head = w->done_tail = NULL;
  pthread_mutex_unlock(&w->mu);
  while (j) {
    svc_job *next = j->next; /* done() may free j */
    j->next = NULL;
    if (j->submitted) {
      j->submitted = false;
      w->pending--;
    }
    j->done(j);
    j = next;
  }
}

/* Workers never take signals: the loop handles them. */
static int start_thread(svc_workers *w, pthread_t *t) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int rc = pthread_create(t, NULL, worker_main, w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc;
}

ferry_status svc_workers_start(svc_workers **out, struct event_base *base, unsigned n,
                               ferry_error *err) {
  ferry_status st = FERRY_OK;
  svc_workers *w = calloc(1, sizeof *w);
  *out = NULL;
  if (!w || !(w->threads = calloc(n ? n : 1, sizeof *w->threads)) ||
      !(w->wake = event_new(base, -1, 0, on_wake, w))) {
    st = ferry_error_set(err, FERRY_ENOMEM, "out of memory starting the workers");
    goto done;
  }
  if (pthread_mutex_init(&w->mu, NULL) != 0 || pthread_cond_init(&w->cv, NULL) != 0) {
    st = ferry_error_set(err, FERRY_ENOMEM, "cannot create the workers' locks");
    goto done;
  }
  w->locks_ready = true;
  for (unsigned i = 0; i < n; i++) {
    int rc = start_thread(w, &w->threads[i]);
    if (rc != 0) {
      st = ferry_error_set(err, rc == EAGAIN ? FERRY_ENOMEM : FERRY_EINTERNAL,
                           "cannot start worker thread %u", i + 1);
      goto done;
    }
    w->nthreads++;
  }
done:
  if (st)
    svc_workers_stop(w);
  else
    *out = w;
  return st;
}

void svc_workers_submit(svc_workers *w, svc_job *j) {
  j->next = NULL;
  j->submitted = true;
  w->pending++;
  pthread_mutex_lock(&w->mu);
  if (w->todo_tail)
    w->todo_tail->next = j;
  else
    w->todo_head = j;
  w->todo_tail = j;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

void svc_workers_post(svc_workers *w, svc_job *j) {
  j->next = NULL;
  pthread_mutex_lock(&w->mu);
  bool was_empty = w->done_head == NULL;
  if (w->done_tail)
    w->done_tail->next = j;
  else
    w->done_head = j;
  w->done_tail = j;
  pthread_mutex_unlock(&w->mu);
  if (was_empty) event_active(w->wake, EV_READ, 0);
}

unsigned svc_workers_pending(const svc_workers *w) {
  return w ? w->pending : 0;
}

void svc_workers_stop(svc_workers *w) {
  if (!w) return;
  if (w->locks_ready) {
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
  }
  for (unsigned i = 0; i < w->nthreads; i++)
    pthread_join(w->threads[i], NULL);
  if (w->locks_ready) {
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
  }
  if (w->wake) event_free(w->wake);
  free(w->threads);
  free(w);
}
