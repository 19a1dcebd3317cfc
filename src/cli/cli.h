/*
 * The ferry command line: a table of commands, each with its options, and the
 * helpers they share (opening the store, printing errors, exit statuses).
 * Commands use only libferry's public headers (include/ferry/).
 */
#ifndef FERRY_CLI_H
#define FERRY_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "ferry/config.h"
#include "ferry/ferry.h"
#include "ferry/store.h"

#define CLI_MAX_OPTS 16
#define CLI_MAX_POS 8

typedef struct cli_opt {
  const char *name;  /* long option without the dashes */
  bool has_arg;
  const char *arg;   /* the argument's name in help, e.g. "N" */
  const char *help;
} cli_opt;

typedef struct cli_args {
  const cli_opt *opts;           /* the command's option table */
  const char *val[CLI_MAX_OPTS]; /* option values, by index in the command's table */
  bool set[CLI_MAX_OPTS];
  const char *pos[CLI_MAX_POS];
  int npos;
} cli_args;

/* What every command gets: resolved global options. */
typedef struct cli_env {
  const char *data_dir;    /* --data, else the config's data, else ./ferry-data */
  const char *config_path; /* --config, or NULL */
  ferry_config *cfg;       /* loaded when --config was given, else NULL */
} cli_env;

typedef struct cli_command {
  const char *name;
  const char *usage;   /* the arguments after the command name */
  const char *summary; /* one line for `ferry --help` */
  const char *help;    /* a paragraph for `ferry COMMAND --help` */
  const cli_opt *opts; /* terminated by {NULL} */
  int min_pos, max_pos;
  bool needs_config;   /* fails with a usage error when --config is missing */
  int (*run)(cli_env *env, const cli_args *args);
} cli_command;

/* The value of option name (NULL if not given; "" for a flag that was given). */
const char *cli_arg(const cli_args *a, const char *name);
/* Whether option name was given. */
bool cli_flag(const cli_args *a, const char *name);

/* Command implementations, one file per group. */
int cli_cmd_ingest(cli_env *env, const cli_args *a);
int cli_cmd_log(cli_env *env, const cli_args *a);
int cli_cmd_customers(cli_env *env, const cli_args *a);
int cli_cmd_status(cli_env *env, const cli_args *a);
int cli_cmd_backup(cli_env *env, const cli_args *a);

int cli_cmd_plan(cli_env *env, const cli_args *a);
int cli_cmd_rewind(cli_env *env, const cli_args *a);
int cli_cmd_resume(cli_env *env, const cli_args *a);
int cli_cmd_replay(cli_env *env, const cli_args *a);
int cli_cmd_explain(cli_env *env, const cli_args *a);
int cli_cmd_history(cli_env *env, const cli_args *a);
int cli_cmd_sync(cli_env *env, const cli_args *a);

/* A customer's projection opened for a command: store, mapping, projector. */
typedef struct cli_project {
  ferry_store *store;
  struct ferry_mapping *mapping;
  struct ferry_projector *proj;
} cli_project;

typedef enum cli_project_mode {
  CLI_PROJECT_WORK = 0,   /* writer; refuses a changed mapping */
  CLI_PROJECT_REBUILD = 1, /* writer; a changed mapping is what it is for */
  CLI_PROJECT_READ = 2    /* read-only; reports a changed mapping instead of refusing */
} cli_project_mode;

/* Opens store, mapping (from the config) and the customer's projector; on
 * failure prints why and returns the exit status. */
int cli_project_open(const cli_env *env, const char *customer, cli_project_mode mode,
                     cli_project *out);
void cli_project_close(cli_project *cp);
/* Folds new events, with progress on a terminal; returns the exit status. */
int cli_project_fold(cli_project *cp);

/* Progress on a terminal for work that takes more than a second. */
typedef struct cli_progress {
  const char *what; /* "folded", "synced" */
  const char *unit; /* "events", "calls" */
  double start;
  bool shown;
} cli_progress;
void cli_progress_init(cli_progress *pr, const char *what, const char *unit);
void cli_progress_update(void *arg, uint64_t done, uint64_t total);
void cli_progress_end(cli_progress *pr);

/* Prints "ferry: <message>" for err and returns its exit status. */
int cli_fail(const ferry_error *err);
/* Prints "ferry: <formatted>" and returns the exit status for st. */
int cli_failf(ferry_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Opens the store for the command; on failure prints why and returns non-zero exit code. */
int cli_open_store(const cli_env *env, ferry_store_mode mode, ferry_store **out);

/* Parses a non-negative decimal integer option; prints an error and returns false if invalid. */
bool cli_parse_u64(const char *opt, const char *text, uint64_t *out);

/* Checks a customer id argument; prints an error and returns false if invalid. */
bool cli_check_customer(const char *customer);

#endif /* FERRY_CLI_H */
