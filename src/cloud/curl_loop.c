/*
 * curl multi-socket on libevent (see curl_loop.h). One libevent event per
 * socket curl asks us to watch, one timer for curl's own timeouts; each
 * readiness or timeout goes back to curl_multi_socket_action, after which the
 * finished transfers are collected and handed to the owner.
 *
 * Watches outlive curl's interest: when a transfer ends, curl stops
 * watching its connection (CURL_POLL_REMOVE) and asks for it again when the
 * next request reuses it, which would cost two epoll_ctl calls per request.
 * So a removed watch is parked, still armed, in a table by descriptor, and
 * taken up again as it is if curl wants the same socket back. It is really
 * removed when curl closes the socket (CURLOPT_CLOSESOCKETFUNCTION), or
 * when the idle socket becomes readable (the server closed it). Not every
 * socket curl watches goes through that callback (its resolver's wake-up
 * pair does not), so a parked watch is taken up only if its descriptor is
 * still the same socket (its inode): a number reused by a new socket gets a
 * new watch.
 */
#include "cloud/curl_loop.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct curl_loop {
  struct event_base *base;
  CURLM *multi;
  struct event *timer; /* curl's next timeout */
  int running;         /* transfers curl still has */
  bool global;         /* curl_global_init succeeded: cleanup owed */
  curl_loop_done_fn done;
  void *arg;
  struct sock_watch **watch; /* by descriptor: every watch, parked or not */
  size_t nwatch;
};

/* What we watch for one socket; curl keeps the pointer (curl_multi_assign)
 * while it is interested. */
typedef struct sock_watch {
  struct event ev;
  curl_socket_t fd;
  ino_t ino; /* the socket's inode when watched first: tells a reused number */
  bool armed;
  bool parked; /* curl removed it; still armed, waiting to be asked again */
  short kind;  /* what ev waits for while armed */
} sock_watch;

static void watch_free(curl_loop *l, sock_watch *w) {
  if (w->armed) event_del(&w->ev);
  if (w->fd >= 0 && (size_t)w->fd < l->nwatch && l->watch[w->fd] == w) l->watch[w->fd] = NULL;
  free(w);
}

/* Records w under its descriptor; -1 when out of memory. */
static int watch_put(curl_loop *l, sock_watch *w) {
  if (w->fd < 0) return -1;
  if ((size_t)w->fd >= l->nwatch) {
    size_t n = l->nwatch ? l->nwatch : 64;
    while (n <= (size_t)w->fd) n *= 2;
    sock_watch **t = realloc(l->watch, n * sizeof *t);
    if (!t) return -1;
    memset(t + l->nwatch, 0, (n - l->nwatch) * sizeof *t);
    l->watch = t;
    l->nwatch = n;
  }
  l->watch[w->fd] = w;
  return 0;
}

static sock_watch *watch_get(const curl_loop *l, curl_socket_t fd) {
  return fd >= 0 && (size_t)fd < l->nwatch ? l->watch[fd] : NULL;
}

static ino_t socket_ino(curl_socket_t fd) {
  struct stat st;
  return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

/* Hands every finished transfer to the owner. The message is copied out
 * first: removing the handle invalidates it. */
static void collect_done(curl_loop *l) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(l->multi, &left)) != NULL) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL *easy = msg->easy_handle;
    CURLcode rc = msg->data.result;
    curl_multi_remove_handle(l->multi, easy);
    l->done(l->arg, easy, rc);
  }
}

static void on_socket(evutil_socket_t fd, short what, void *arg) {
  curl_loop *l = arg;
  sock_watch *w = watch_get(l, fd);
  if (w && w->parked) { /* an idle connection closed by the server: curl finds out on reuse */
    event_del(&w->ev);
    w->armed = false;
    return;
  }
  int action =
      ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
  curl_multi_socket_action(l->multi, fd, action, &l->running);
  collect_done(l);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg) {
  curl_loop *l = arg;
  (void)fd;
  (void)what;
  curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &l->running);
  collect_done(l);
}

/* CURLMOPT_SOCKETFUNCTION: start, change or stop watching socket s. */
static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
  curl_loop *l = userp;
  sock_watch *w = socketp;
  (void)easy;
  if (what == CURL_POLL_REMOVE) {
    if (w) { /* parked: see the top of the file */
      w->parked = true;
      curl_multi_assign(l->multi, s, NULL);
    }
    return 0;
  }
  short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) |
                       ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
  if (!w && (w = watch_get(l, s)) != NULL) { /* parked: is it still this socket? */
    ino_t ino = socket_ino(s);
    if (ino && ino == w->ino) {
      w->parked = false;
      curl_multi_assign(l->multi, s, w);
    } else { /* closed behind our back and the number reused: start afresh */
      watch_free(l, w);
      w = NULL;
    }
  }
  if (!w) {
    w = calloc(1, sizeof *w);
    if (!w) return -1; /* curl fails the transfer: out of memory */
    w->fd = s;
    w->ino = socket_ino(s);
    if (watch_put(l, w)) {
      free(w);
      return -1;
    }
    curl_multi_assign(l->multi, s, w);
  } else if (w->armed) {
    if (w->kind == kind) return 0; /* unchanged: spare the loop two epoll_ctl calls */
    event_del(&w->ev);
  }
  event_assign(&w->ev, l->base, s, kind, on_socket, l);
  w->armed = event_add(&w->ev, NULL) == 0;
  w->kind = kind;
  return w->armed ? 0 : -1;
}

/* CURLOPT_CLOSESOCKETFUNCTION: the socket's watch goes before the socket. */
static int close_cb(void *userp, curl_socket_t s) {
  curl_loop *l = userp;
  sock_watch *w = watch_get(l, s); /* curl has removed it already (Curl_multi_closed) */
  if (w) watch_free(l, w);
  return close(s);
}

/* CURLMOPT_TIMERFUNCTION: curl wants on_timeout in timeout_ms (-1: never). */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
  curl_loop *l = userp;
  (void)multi;
  if (timeout_ms < 0) {
    evtimer_del(l->timer);
    return 0;
  }
  struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  return evtimer_add(l->timer, &tv) == 0 ? 0 : -1;
}

ferry_status curl_loop_create(curl_loop **out, struct event_base *base, long max_host_conns,
                              curl_loop_done_fn done, void *arg, ferry_error *err) {
  ferry_status st = FERRY_OK;
  curl_loop *l = calloc(1, sizeof *l);
  *out = NULL;
  if (!l) {
    st = ferry_error_set(err, FERRY_ENOMEM, "out of memory creating the cloud client");
    goto done;
  }
  l->base = base;
  l->done = done;
  l->arg = arg;
  /* reference-counted by libcurl; thread-safe since 7.84 */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    st = ferry_error_set(err, FERRY_ECLOUD, "libcurl failed to initialise");
    goto done;
  }
  l->global = true;
  l->multi = curl_multi_init();
  l->timer = evtimer_new(base, on_timeout, l);
  if (!l->multi || !l->timer) {
    st = ferry_error_set(err, FERRY_ENOMEM, "out of memory creating the cloud client");
    goto done;
  }
  curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, l);
  curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(l->multi, CURLMOPT_TIMERDATA, l);
  /* one connection per request in flight, all kept open for reuse */
  curl_multi_setopt(l->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_host_conns);
  curl_multi_setopt(l->multi, CURLMOPT_MAXCONNECTS, max_host_conns);
done:
  if (st)
    curl_loop_destroy(l);
  else
    *out = l;
  return st;
}

ferry_status curl_loop_add(curl_loop *l, CURL *easy, ferry_error *err) {
  curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, close_cb);
  curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, l);
  CURLMcode mc = curl_multi_add_handle(l->multi, easy);
  if (mc == CURLM_OK) return FERRY_OK;
  return ferry_error_set(err, mc == CURLM_OUT_OF_MEMORY ? FERRY_ENOMEM : FERRY_ECLOUD,
                         "cannot start a request: %s", curl_multi_strerror(mc));
}

void curl_loop_remove(curl_loop *l, CURL *easy) {
  if (l && easy) curl_multi_remove_handle(l->multi, easy);
}

void curl_loop_destroy(curl_loop *l) {
  if (!l) return;
  /* closing the cached connections calls close_cb, which frees their
   * watches, so the multi goes before the timer and the base it uses */
  if (l->multi) curl_multi_cleanup(l->multi);
  for (size_t i = 0; i < l->nwatch; i++) /* none should be left: curl closed its sockets */
    if (l->watch[i]) watch_free(l, l->watch[i]);
  free(l->watch);
  if (l->timer) event_free(l->timer);
  if (l->global) curl_global_cleanup();
  free(l);
}
