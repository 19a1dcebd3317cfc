/* ferry-cloudsim option table (parsed by tools/common/optable.c).
 *
 * One table row per option: its name, the kind of value it takes and where in cs_config the value
 * lands. Checks that involve several options (the fault rates share one draw, so they must add
 * up to at most 1) run after the whole command line has been read.
 */
#include "options.h"

#include <stddef.h>
#include <string.h>

#include "common/optable.h"

#define AT(field) offsetof(cs_config, field)

static const opt_def OPTIONS[] = {
    {"listen", OPT_STRING, AT(listen), "HOST:PORT", "address to serve on; port 0 picks a free one"},
    {"state", OPT_STRING, AT(state_file), "FILE",
     "load state from FILE at start, save it on SIGTERM/SIGINT"},
    {"save-every", OPT_COUNT, AT(save_every), "S", "also save the state every S seconds (0: off)"},
    {"ids", OPT_STRING, AT(ids), "int|uuid", "kind of record id made by POST (default int)"},
    {"id-field", OPT_STRING, AT(id_field), "NAME", "field holding a record's id (default id)"},
    {"token-env", OPT_STRING, AT(token_env), "VAR",
     "require 'Authorization: Bearer <token>', the token read from VAR"},
    {"no-idempotency", OPT_FLAG, AT(no_idempotency), NULL, "ignore the Idempotency-Key header"},
    {"max-body", OPT_COUNT, AT(max_body), "BYTES", "largest request body (default 16 MiB)"},
    {"seed", OPT_COUNT, AT(seed), "N", "seed of the fault and uuid generators (default 1)"},
    {"fail-rate", OPT_RATE, AT(fail_rate), "P", "answer 500 or 503 without acting"},
    {"throttle-rate", OPT_RATE, AT(throttle_rate), "P", "answer 429 with Retry-After"},
    {"retry-after", OPT_COUNT, AT(retry_after), "S", "Retry-After seconds on 429 (default 1)"},
    {"drop-rate", OPT_RATE, AT(drop_rate), "P", "close the connection without acting"},
    {"commit-then-drop-rate", OPT_RATE, AT(commit_drop_rate), "P",
     "act, then close the connection without an answer"},
    {"latency-ms", OPT_COUNT, AT(latency_ms), "N", "delay every answer by N ms"},
    {"verbose", OPT_FLAG, AT(verbose), NULL, "log each request to stderr"},
    {"help", OPT_FLAG, AT(help), NULL, "print this help"},
};

/* Counts are bounded so that a typo (an extra digit) fails loudly instead of, say, a latency of
 * weeks; 2^32-1 is more than any of them needs. */
static const opt_table TABLE = {"ferry-cloudsim", OPTIONS, sizeof OPTIONS / sizeof OPTIONS[0],
                                4294967295UL};

void cs_options_usage(FILE *out) {
  fprintf(out, "usage: ferry-cloudsim --listen HOST:PORT [options]\n\n"
               "Reference JSON REST cloud API for ferry's demo, tests and benchmarks.\n\n");
  opt_usage(&TABLE, out, 30);
}

/* The checks that need the whole command line. */
static int check_config(cs_config *cfg) {
  int rc = 2;
  double rates = cfg->fail_rate + cfg->throttle_rate + cfg->drop_rate + cfg->commit_drop_rate;

  if (!cfg->listen) {
    fprintf(stderr, "ferry-cloudsim: --listen HOST:PORT is required\n");
    goto done;
  }
  if (strcmp(cfg->ids, "int") == 0) {
    cfg->id_kind = CS_IDS_INT;
  } else if (strcmp(cfg->ids, "uuid") == 0) {
    cfg->id_kind = CS_IDS_UUID;
  } else {
    fprintf(stderr, "ferry-cloudsim: --ids is int or uuid, not '%s'\n", cfg->ids);
    goto done;
  }
  if (!cfg->id_field[0]) {
    fprintf(stderr, "ferry-cloudsim: --id-field must not be empty\n");
    goto done;
  }
  /* One uniform draw picks at most one fault, so the rates are slices of [0,1). */
  if (rates > 1.0 + 1e-9) {
    fprintf(stderr, "ferry-cloudsim: the fault rates add up to %g; at most 1 is possible\n", rates);
    goto done;
  }
  rc = 0;
done:
  return rc;
}

int cs_options_parse(cs_config *cfg, int argc, char **argv) {
  memset(cfg, 0, sizeof *cfg);
  cfg->ids = "int";
  cfg->id_field = "id";
  cfg->retry_after = 1;
  cfg->seed = 1;
  cfg->max_body = 16UL * 1024 * 1024;
  int rc = opt_parse(&TABLE, cfg, argc, argv, NULL);
  return rc ? rc : cfg->help ? 0 : check_config(cfg);
}
