/*
 * ferry sync: fold the customer's new events, then apply the plan to the
 * cloud until it matches (the applier in ferry/cloud.h), and say what was
 * done. Exit 0 when the cloud matches the projection; 1 when entities failed,
 * are still pending, or the cloud could not be reached after retries.
 *
 * A first SIGINT/SIGTERM stops gracefully (calls in flight finish and are
 * recorded); a second one ends the process at once, which is safe too: every
 * outcome is recorded atomically and a create in doubt is looked up by
 * external key on the next run.
 */
#include <event2/event.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ferry/cloud.h"
#include "ferry/mapping.h"
#include "ferry/projector.h"

#define FAILED_SHOWN 20 /* failed entities listed in the output; status lists all */

typedef struct sync_cli {
  const char *customer;
  bool verbose;
  ferry_sync *sync;
  cli_progress progress;
  uint64_t total; /* dirty entities when the sync began */
  uint64_t done;
  unsigned failed_shown;
  struct event *sigint, *sigterm;
  bool done_flag;
  ferry_status st;
  ferry_error err;
  ferry_sync_report rep;
  struct event_base *base;
} sync_cli;

static const char *outcome_word(const ferry_call *c, const ferry_call_result *r) {
  switch (r->outcome) {
  case FERRY_OUTCOME_OK:
    return c->kind == FERRY_CALL_CREATE  ? "created"
           : c->kind == FERRY_CALL_PATCH ? "patched"
                                         : "deleted";
  case FERRY_OUTCOME_ADOPTED: return "adopted";
  case FERRY_OUTCOME_GONE: return c->kind == FERRY_CALL_DELETE ? "already deleted" : "gone";
  case FERRY_OUTCOME_FAILED: return "FAILED";
  case FERRY_OUTCOME_UNKNOWN: return "unknown";
  }
  return "?";
}

/* One line per call with --verbose; failures always (up to FAILED_SHOWN). */
static void on_call(void *arg, const ferry_call *c, const ferry_call_result *r) {
  sync_cli *sc = arg;
  sc->done++;
  bool failed = r && r->outcome == FERRY_OUTCOME_FAILED;
  if (failed && !sc->verbose && sc->failed_shown++ < FAILED_SHOWN) {
    cli_progress_end(&sc->progress);
    fprintf(stderr, "ferry: %s/%s failed: %s\n", c->entity, c->key, r->error ? r->error : "");
  }
  if (sc->verbose) {
    cli_progress_end(&sc->progress);
    if (!r && c->kind == FERRY_CALL_WAIT)
      printf("wait    %s/%s (references %s)\n", c->entity, c->key, c->waits_for);
    else if (!r)
      printf("equal   %s/%s\n", c->entity, c->key);
    else {
      printf("%-7s %s %d %s/%s %s", r->method ? r->method : "-", r->path ? r->path : "-",
             r->http_status, c->entity, c->key, outcome_word(c, r));
      if (r->cloud_id) printf(" id %s", r->cloud_id);
      printf("\n");
      if (r->error) printf("        %s\n", r->error);
    }
  }
  cli_progress_update(&sc->progress, sc->done, sc->total > sc->done ? sc->total : sc->done);
}

static void on_done(void *arg, ferry_status st, const ferry_sync_report *rep,
                    const ferry_error *err) {
  sync_cli *sc = arg;
  sc->done_flag = true;
  sc->st = st;
  sc->rep = *rep;
  sc->err = *err;
  event_base_loopbreak(sc->base);
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
  sync_cli *sc = arg;
  (void)what;
  cli_progress_end(&sc->progress);
  fprintf(stderr, "ferry: stopping: letting calls in flight finish (again to quit at once)\n");
  event_del(sc->sigint);
  event_del(sc->sigterm);
  signal((int)sig, SIG_DFL);
  signal(sig == SIGINT ? SIGTERM : SIGINT, SIG_DFL);
  ferry_sync_stop(sc->sync);
}

static void print_summary(const ferry_sync_report *r) {
  const ferry_cloud_stats *cs = &r->cloud;
  printf("created %" PRIu64 ", patched %" PRIu64 ", deleted %" PRIu64 ", failed %" PRIu64
         "; %" PRIu64 " calls",
         r->created + r->adopted, r->patched, r->deleted, r->failed, r->calls);
  if (cs->requests != r->calls || cs->retries) {
    printf(" (%" PRIu64 " requests:", cs->requests);
    for (int s = 0; s < 600; s++)
      if (cs->by_status[s]) {
        if (s)
          printf(" %d x%" PRIu64, s, cs->by_status[s]);
        else
          printf(" no answer x%" PRIu64, cs->by_status[s]);
      }
    printf(")");
  }
  printf("\n");
  if (r->adopted)
    printf("adopted %" PRIu64 " records an earlier attempt had created\n", r->adopted);
  if (r->duplicates)
    printf("warning: %" PRIu64 " entities had more than one cloud record (see history)\n",
           r->duplicates);
}

/* Runs the sync on a fresh loop; SIGINT/SIGTERM stop it gracefully. */
static int run(cli_env *env, cli_project *cp, sync_cli *sc) {
  ferry_cloud *cloud = NULL;
  ferry_error err;
  int rc = 0;
  ferry_error_clear(&err);
  sc->base = event_base_new();
  if (!sc->base) return cli_failf(FERRY_ENOMEM, "cannot create an event loop");
  if (ferry_cloud_create_for(&cloud, sc->base, env->cfg, sc->customer, &err)) {
    rc = cli_fail(&err);
    goto done;
  }
  ferry_sync_opts o = {0, on_call, sc};
  if (ferry_sync_create(&sc->sync, sc->base, sc->customer, cp->proj, cloud, &o, &err) ||
      ferry_sync_start(sc->sync, on_done, sc, &err)) {
    rc = cli_fail(&err);
    goto done;
  }
  sc->sigint = evsignal_new(sc->base, SIGINT, on_signal, sc);
  sc->sigterm = evsignal_new(sc->base, SIGTERM, on_signal, sc);
  if (sc->sigint) evsignal_add(sc->sigint, NULL);
  if (sc->sigterm) evsignal_add(sc->sigterm, NULL);
  cli_progress_init(&sc->progress, "synced", "calls");
  while (!sc->done_flag && event_base_dispatch(sc->base) == 0) {
  }
  cli_progress_end(&sc->progress);
  if (!sc->done_flag) rc = cli_failf(FERRY_EINTERNAL, "the event loop ended before the sync");
done:
  ferry_sync_destroy(sc->sync);
  ferry_cloud_destroy(cloud);
  if (sc->sigint) event_free(sc->sigint);
  if (sc->sigterm) event_free(sc->sigterm);
  event_base_free(sc->base);
  return rc;
}

/* The exit status once the sync ended: does the cloud match? */
static int verdict(cli_project *cp, sync_cli *sc) {
  ferry_projection_info info;
  ferry_error err;
  print_summary(&sc->rep);
  if (sc->st) return cli_fail(&sc->err);
  if (ferry_projector_info(cp->proj, &info, &err)) return cli_fail(&err);
  if (sc->rep.stopped)
    return cli_failf(FERRY_ECLOUD, "stopped; %" PRIu64 " entities still pending", info.dirty);
  if (info.failed)
    return cli_failf(FERRY_EFAILED,
                     "%" PRIu64 " entities failed (see 'ferry status %s'; after a fix, "
                     "'ferry sync %s --retry-failed')",
                     info.failed, sc->customer, sc->customer);
  if (info.dirty) return cli_failf(FERRY_EFAILED, "%" PRIu64 " entities still pending", info.dirty);
  return 0;
}

int cli_cmd_sync(cli_env *env, const cli_args *a) {
  cli_project cp;
  sync_cli sc;
  ferry_error err;
  ferry_projection_info info;
  memset(&sc, 0, sizeof sc);
  sc.customer = a->pos[0];
  sc.verbose = cli_flag(a, "verbose");
  int rc = cli_project_open(env, sc.customer, CLI_PROJECT_WORK, &cp);
  if (rc) return rc;
  if (cli_flag(a, "retry-failed")) {
    uint64_t n = 0;
    if (ferry_projector_retry_failed(cp.proj, &n, &err)) {
      rc = cli_fail(&err);
      goto done;
    }
    printf("retrying %" PRIu64 " failed entities\n", n);
  }
  if ((rc = cli_project_fold(&cp))) goto done;
  if (ferry_projector_info(cp.proj, &info, &err)) {
    rc = cli_fail(&err);
    goto done;
  }
  if (info.held)
    fprintf(stderr, "ferry: %s is held at seq %" PRIu64 " (ferry resume lifts it)\n", sc.customer,
            info.hold_seq);
  sc.total = info.dirty;
  if ((rc = run(env, &cp, &sc))) goto done;
  rc = verdict(&cp, &sc);
done:
  cli_project_close(&cp);
  return rc;
}
