/* ferry-cloudsim option table and parser.
 *
 * One table row per option: its name, the kind of value it takes and where in cs_config the value
 * lands. The parser accepts "--name value" and "--name=value"; flags take no value. Checks that
 * involve several options (the fault rates share one draw, so they must add up to at most 1) run
 * after the whole command line has been read.
 */
#include "options.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum { ARG_STRING, ARG_RATE, ARG_COUNT, ARG_FLAG } arg_kind;

typedef struct {
  const char *name;
  arg_kind kind;
  size_t offset; /* of the field in cs_config */
  const char *metavar;
  const char *help;
} opt_def;

#define AT(field) offsetof(cs_config, field)

static const opt_def OPTIONS[] = {
    {"listen", ARG_STRING, AT(listen), "HOST:PORT", "address to serve on; port 0 picks a free one"},
    {"state", ARG_STRING, AT(state_file), "FILE",
     "load state from FILE at start, save it on SIGTERM/SIGINT"},
    {"save-every", ARG_COUNT, AT(save_every), "S", "also save the state every S seconds (0: off)"},
    {"ids", ARG_STRING, AT(ids), "int|uuid", "kind of record id made by POST (default int)"},
    {"id-field", ARG_STRING, AT(id_field), "NAME", "field holding a record's id (default id)"},
    {"token-env", ARG_STRING, AT(token_env), "VAR",
     "require 'Authorization: Bearer <token>', the token read from VAR"},
    {"no-idempotency", ARG_FLAG, AT(no_idempotency), NULL, "ignore the Idempotency-Key header"},
    {"max-body", ARG_COUNT, AT(max_body), "BYTES", "largest request body (default 16 MiB)"},
    {"seed", ARG_COUNT, AT(seed), "N", "seed of the fault and uuid generators (default 1)"},
    {"fail-rate", ARG_RATE, AT(fail_rate), "P", "answer 500 or 503 without acting"},
    {"throttle-rate", ARG_RATE, AT(throttle_rate), "P", "answer 429 with Retry-After"},
    {"retry-after", ARG_COUNT, AT(retry_after), "S", "Retry-After seconds on 429 (default 1)"},
    {"drop-rate", ARG_RATE, AT(drop_rate), "P", "close the connection without acting"},
    {"commit-then-drop-rate", ARG_RATE, AT(commit_drop_rate), "P",
     "act, then close the connection without an answer"},
    {"latency-ms", ARG_COUNT, AT(latency_ms), "N", "delay every answer by N ms"},
    {"verbose", ARG_FLAG, AT(verbose), NULL, "log each request to stderr"},
    {"help", ARG_FLAG, AT(help), NULL, "print this help"},
};

#define N_OPTIONS (sizeof OPTIONS / sizeof OPTIONS[0])

/* Counts are bounded so that a typo (an extra digit) fails loudly instead of, say, a latency of
 * weeks; 2^32-1 is more than any of them needs. */
#define MAX_COUNT 4294967295UL

void cs_options_usage(FILE *out) {
  fprintf(out, "usage: ferry-cloudsim --listen HOST:PORT [options]\n\n"
               "Reference JSON REST cloud API for ferry's demo, tests and benchmarks.\n\n");
  for (size_t i = 0; i < N_OPTIONS; i++) {
    const opt_def *o = &OPTIONS[i];
    char left[64];
    snprintf(left, sizeof left, "--%s%s%s", o->name, o->metavar ? " " : "",
             o->metavar ? o->metavar : "");
    fprintf(out, "  %-30s %s\n", left, o->help);
  }
}

static const opt_def *find_option(const char *name, size_t len) {
  for (size_t i = 0; i < N_OPTIONS; i++) {
    if (strlen(OPTIONS[i].name) == len && memcmp(OPTIONS[i].name, name, len) == 0)
      return &OPTIONS[i];
  }
  return NULL;
}

/* Stores value into the field o names; 0 on success, -1 (after a message) when it does not fit
 * the option's kind. */
static int set_value(cs_config *cfg, const opt_def *o, const char *value) {
  char *field = (char *)cfg + o->offset;
  char *end = NULL;
  int rc = -1;

  errno = 0;
  switch (o->kind) {
  case ARG_STRING:
    *(const char **)(void *)field = value;
    rc = 0;
    break;
  case ARG_RATE: {
    double d = strtod(value, &end);
    if (errno || end == value || *end || !isfinite(d) || d < 0 || d > 1) {
      fprintf(stderr, "ferry-cloudsim: --%s wants a probability 0..1, not '%s'\n", o->name, value);
      goto done;
    }
    *(double *)(void *)field = d;
    rc = 0;
    break;
  }
  case ARG_COUNT: {
    unsigned long long n = strtoull(value, &end, 10);
    if (errno || end == value || *end || value[0] == '-' || n > MAX_COUNT) {
      fprintf(stderr, "ferry-cloudsim: --%s wants a whole number, not '%s'\n", o->name, value);
      goto done;
    }
    *(unsigned long *)(void *)field = (unsigned long)n;
    rc = 0;
    break;
  }
  case ARG_FLAG:
    *(bool *)(void *)field = true;
    rc = 0;
    break;
  }
done:
  return rc;
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
  int rc = 2;

  memset(cfg, 0, sizeof *cfg);
  cfg->ids = "int";
  cfg->id_field = "id";
  cfg->retry_after = 1;
  cfg->seed = 1;
  cfg->max_body = 16UL * 1024 * 1024;

  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strncmp(arg, "--", 2) != 0) {
      fprintf(stderr, "ferry-cloudsim: unexpected argument '%s'\n", arg);
      goto done;
    }
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const opt_def *o = find_option(name, len);
    if (!o) {
      fprintf(stderr, "ferry-cloudsim: unknown option '%s' (see --help)\n", arg);
      goto done;
    }
    const char *value = eq ? eq + 1 : NULL;
    if (o->kind == ARG_FLAG && value) {
      fprintf(stderr, "ferry-cloudsim: --%s takes no value\n", o->name);
      goto done;
    }
    if (o->kind != ARG_FLAG && !value) {
      if (i + 1 >= argc) {
        fprintf(stderr, "ferry-cloudsim: --%s needs a value (%s)\n", o->name, o->metavar);
        goto done;
      }
      value = argv[++i];
    }
    if (set_value(cfg, o, value ? value : "") != 0) goto done;
  }
  rc = cfg->help ? 0 : check_config(cfg);
done:
  return rc;
}
