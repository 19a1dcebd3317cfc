/* ferry-cloudsim: the reference cloud API that ferry's demo, tests and benchmarks talk to.
 *
 * A single-threaded libevent HTTP server that speaks the JSON REST shape of SPEC.md §3 on any
 * collection path, with Stripe-style idempotency keys, optional bearer auth, seeded fault
 * injection and an optional state file. This file owns the process: options, the event loop,
 * signals (SIGTERM/SIGINT save the state and end the loop), periodic saves and teardown.
 * Exit status: 0 after a signal, 1 when it cannot start or cannot save, 2 for bad usage.
 */
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "options.h"
#include "store.h"

typedef struct {
  const cs_config *cfg;
  cs_store *store;
  struct event_base *base;
  int save_failed;
} app;

/* Saves the state file, if there is one. Returns 0 on success. */
static int save_state(app *a) {
  char err[256];
  if (!a->cfg->state_file) return 0;
  if (cs_store_save(a->store, a->cfg->state_file, err, sizeof err) == CS_OK) return 0;
  fprintf(stderr, "ferry-cloudsim: cannot save state to %s: %s\n", a->cfg->state_file, err);
  return -1;
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
  app *a = arg;
  (void)sig;
  (void)what;
  if (save_state(a) != 0) a->save_failed = 1;
  event_base_loopexit(a->base, NULL);
}

static void on_save_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  (void)save_state(arg); /* a failed periodic save is reported and retried next time */
}

/* The bearer token from the variable --token-env names; NULL with a message when it is unset. */
static int read_token(const cs_config *cfg, const char **token) {
  *token = NULL;
  if (!cfg->token_env) return 0;
  *token = getenv(cfg->token_env);
  if (*token && **token) return 0;
  /* Name the variable, never a value. */
  fprintf(stderr, "ferry-cloudsim: --token-env %s: the variable is unset or empty\n",
          cfg->token_env);
  return -1;
}

/* Everything between start-up and the end of the loop; returns the exit status. */
static int run(const cs_config *cfg, const char *token) {
  int rc = 1;
  char err[256];
  unsigned port = 0;
  app a = {.cfg = cfg};
  cs_server *server = NULL;
  struct event *sigterm = NULL, *sigint = NULL, *saver = NULL;
  struct timeval every = {.tv_sec = (time_t)cfg->save_every};

  if (!(a.base = event_base_new()) ||
      cs_store_create(&a.store, cfg->id_field, cfg->id_kind, cfg->seed) != CS_OK) {
    fprintf(stderr, "ferry-cloudsim: out of memory\n");
    goto done;
  }
  if (cfg->state_file && cs_store_load(a.store, cfg->state_file, err, sizeof err) != CS_OK) {
    fprintf(stderr, "ferry-cloudsim: cannot load state %s: %s\n", cfg->state_file, err);
    goto done;
  }
  if (cs_server_start(&server, a.base, a.store, cfg, token, &port, err, sizeof err) != 0) {
    fprintf(stderr, "ferry-cloudsim: %s\n", err);
    goto done;
  }
  sigterm = evsignal_new(a.base, SIGTERM, on_signal, &a);
  sigint = evsignal_new(a.base, SIGINT, on_signal, &a);
  if (!sigterm || !sigint || evsignal_add(sigterm, NULL) != 0 || evsignal_add(sigint, NULL) != 0) {
    fprintf(stderr, "ferry-cloudsim: cannot install signal handlers\n");
    goto done;
  }
  if (cfg->save_every && cfg->state_file) {
    saver = event_new(a.base, -1, EV_PERSIST, on_save_timer, &a);
    if (!saver || event_add(saver, &every) != 0) goto done;
  }
  /* Tests and scripts wait for this exact line to learn the port. */
  printf("listening on %.*s:%u\n", (int)(strrchr(cfg->listen, ':') - cfg->listen), cfg->listen,
         port);
  fflush(stdout);
  if (event_base_dispatch(a.base) < 0) goto done;
  rc = a.save_failed ? 1 : 0;
done:
  if (saver) event_free(saver);
  if (sigint) event_free(sigint);
  if (sigterm) event_free(sigterm);
  cs_server_stop(server);
  cs_store_destroy(a.store);
  if (a.base) event_base_free(a.base);
  return rc;
}

int main(int argc, char **argv) {
  cs_config cfg;
  const char *token = NULL;
  int rc = cs_options_parse(&cfg, argc, argv);

  if (rc != 0 || cfg.help) {
    cs_options_usage(rc ? stderr : stdout);
    goto done;
  }
  rc = 2;
  if (read_token(&cfg, &token) != 0) goto done;
  /* A client that hangs up mid-answer must cost a failed write, not the process. */
  signal(SIGPIPE, SIG_IGN);
  rc = run(&cfg, token);
  libevent_global_shutdown(); /* so leak checkers see libevent's own globals freed too */
done:
  return rc;
}
