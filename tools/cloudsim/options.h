/* ferry-cloudsim command line: the settings one run of the simulator uses.
 *
 * Every option is declared once, in the table in options.c, which drives parsing, validation of
 * the value's kind and the --help text alike. Strings in cs_config point into argv or are static,
 * so a config needs no cleanup.
 */
#ifndef CLOUDSIM_OPTIONS_H
#define CLOUDSIM_OPTIONS_H

#include <stdbool.h>
#include <stdio.h>

/* How new record ids are made: increasing integers per collection (JSON numbers) or random
 * version-4 UUIDs (JSON strings). */
typedef enum { CS_IDS_INT = 0, CS_IDS_UUID = 1 } cs_id_kind;

typedef struct cs_config {
  const char *listen;     /* "HOST:PORT"; port 0 lets the kernel pick */
  const char *state_file; /* NULL: state lives in memory only */
  const char *ids;        /* "int" or "uuid", as given */
  cs_id_kind id_kind;     /* ids, parsed */
  const char *id_field;
  const char *token_env; /* NULL: no authentication */
  double fail_rate, throttle_rate, drop_rate, commit_drop_rate;
  unsigned long latency_ms, retry_after, seed, save_every, max_body;
  bool no_idempotency, verbose, help;
} cs_config;

/* Fills cfg from argv (argv[0] skipped). Returns 0 on success, or 2 (the usage exit status)
 * after printing what was wrong to stderr. cfg->help set means: print cs_options_usage and
 * exit 0. */
int cs_options_parse(cs_config *cfg, int argc, char **argv);

/* Prints the usage line and the option table to out. */
void cs_options_usage(FILE *out);

#endif
