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
