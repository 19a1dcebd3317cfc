/*
 * Opening a customer's projection for a command (store + mapping +
 * projector), and progress lines on a terminal for long folds and syncs.
 */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ferry/mapping.h"
#include "ferry/projector.h"

int cli_project_open(const cli_env *env, const char *customer, cli_project_mode mode,
                     cli_project *out) {
  ferry_error err;
  ferry_error_clear(&err);
  out->store = NULL;
  out->mapping = NULL;
  out->proj = NULL;
  if (!cli_check_customer(customer)) return 2;
  if (!env->cfg) {
    fprintf(stderr, "ferry: this command needs --config FILE (it names the mapping)\n");
    return 2;
  }
  int rc = 0;
  if (ferry_mapping_load(&out->mapping, env->cfg->mapping, &err)) {
    rc = cli_fail(&err);
    goto done;
  }
  if ((rc = cli_open_store(env, mode == CLI_PROJECT_READ ? FERRY_STORE_READ : FERRY_STORE_WRITE,
                           &out->store)))
    goto done;
  ferry_projector_opts opts = {env->cfg->cloud.id_field, env->cfg->cloud.external_key_field, 0};
  if (ferry_projector_open(&out->proj, out->store, out->mapping, customer, &opts,
                           mode != CLI_PROJECT_WORK, &err))
    rc = cli_fail(&err);
done:
  if (rc) cli_project_close(out);
  return rc;
}

int cli_project_fold(cli_project *cp) {
  ferry_error err;
  cli_progress pr;
  ferry_error_clear(&err);
  cli_progress_init(&pr, "folded", "events");
  ferry_status st = ferry_projector_fold(cp->proj, cli_progress_update, &pr, NULL, &err);
  cli_progress_end(&pr);
  return st ? cli_fail(&err) : 0;
}

void cli_project_close(cli_project *cp) {
  ferry_projector_close(cp->proj);
  ferry_store_close(cp->store);
  ferry_mapping_free(cp->mapping);
  cp->proj = NULL;
  cp->store = NULL;
  cp->mapping = NULL;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void cli_progress_init(cli_progress *pr, const char *what, const char *unit) {
  pr->what = what;
  pr->unit = unit;
  pr->start = now_s();
  pr->shown = false;
}

void cli_progress_update(void *arg, uint64_t done, uint64_t total) {
  cli_progress *pr = arg;
  double el = now_s() - pr->start;
  if (el < 1.0 || !isatty(2)) return; /* nothing extra for scripts and quick runs */
  double rate = done / el;
  double eta = rate > 0 && total > done ? (total - done) / rate : 0;
  fprintf(stderr, "\r%s %llu / %llu %s (%.0f/s, ETA %.0fs)   ", pr->what,
          (unsigned long long)done, (unsigned long long)total, pr->unit, rate, eta);
  pr->shown = true;
}

void cli_progress_end(cli_progress *pr) {
  if (pr->shown) fputc('\n', stderr);
  pr->shown = false;
}
