/*
 * ferry's entry point: global options, the command table, option parsing and
 * help. Each command lives in a cmd_*.c file by group; this file only
 * dispatches. Exit statuses (SPEC §4): 0 ok, 1 runtime failure, 2 invalid
 * usage or input, 3 busy.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const cli_opt ingest_opts[] = {
    {"format", true, "ndjson|protobuf", "input format (default ndjson)"},
    {"skip-invalid", true, "REJECTS",
     "append the valid changes and write each invalid one, with its reason, to REJECTS"},
    {NULL, false, NULL, NULL}};
static const cli_opt log_opts[] = {
    {"from-seq", true, "N", "start at event N (default 1)"},
    {"limit", true, "K", "print at most K events"},
    {NULL, false, NULL, NULL}};
static const cli_opt rewind_opts[] = {
    {"to-seq", true, "N", "the seq to rewind to (required)"},
    {"hold", false, NULL, "stay at N until 'ferry resume' (the next sync rolls the cloud back)"},
    {NULL, false, NULL, NULL}};
static const cli_opt history_opts[] = {
    {"entity", true, "E/KEY", "only calls for this entity"},
    {"row", true, "TABLE/KEY", "only calls caused by changes of this legacy row"},
    {"json", false, NULL, "one JSON object a line"},
    {NULL, false, NULL, NULL}};
static const cli_opt sync_opts[] = {
    {"retry-failed", false, NULL, "try the entities the cloud refused again"},
    {"verbose", false, NULL, "print every call as it completes"},
    {NULL, false, NULL, NULL}};
static const cli_opt json_opts[] = {{"json", false, NULL, "print JSON"}, {NULL, false, NULL, NULL}};
static const cli_opt no_opts[] = {{NULL, false, NULL, NULL}};

static const cli_command commands[] = {
    {"ingest", "CUSTOMER [FILE|-]", "append a batch of legacy changes to the customer's log",
     "Reads changes from FILE (or standard input) and appends them to CUSTOMER's event log,\n"
     "all or nothing. Changes already in the log (by id) are counted as duplicates. Any\n"
     "invalid change rejects the whole batch, listing every error, unless --skip-invalid.\n"
     "Prints appended / duplicates / rejected and the new head seq once the batch is durable.",
     ingest_opts, 1, 2, false, cli_cmd_ingest},
    {"log", "CUSTOMER", "print the customer's events as stored, one JSON object a line",
     "Prints events with their seq and ingested_at, oldest first.", log_opts, 1, 1, false,
     cli_cmd_log},
    {"customers", "", "list the customers that have a log, with their head seq",
     "Lists every customer in the data directory.", json_opts, 0, 0, false, cli_cmd_customers},
    {"status", "[CUSTOMER]", "show a customer's (or every customer's) state",
     "Shows the head seq of the log and, with --config, the projection: projected seq, hold,\n"
     "pending and failed entities (with the cloud's answer), the last sync.", json_opts, 0,
     1, false, cli_cmd_status},
    {"plan", "CUSTOMER", "fold new events and print the cloud calls a sync would make",
     "Folds the events after the checkpoint into the projection and prints the calls a sync\n"
     "would make, in the order it would make them (creates by reference order, patches with\n"
     "only the changed fields, deletes in reverse reference order), each with the events that\n"
     "caused it. Sends nothing; needs no cloud.", json_opts, 1, 1, true, cli_cmd_plan},
    {"sync", "CUSTOMER", "fold new events and apply the plan until the cloud matches",
     "Folds new events, then makes the cloud calls the plan needs (cloud.concurrency in\n"
     "flight, references first, retries with backoff), recording each outcome, its audit\n"
     "record and the entity's cloud id as it completes. Exit 0 when the cloud matches, 1 when\n"
     "entities failed or the cloud was unreachable. Interrupting it is safe: the next sync\n"
     "finds a create in doubt by its external key instead of creating it twice.",
     sync_opts, 1, 1, true, cli_cmd_sync},
    {"rewind", "CUSTOMER --to-seq N", "reset the projection to the state as of seq N",
     "Rebuilds the projection from events 1..N. Without --hold the next plan or sync replays\n"
     "N+1.. (so the cloud ends where it was); with --hold it stays at N, and the next sync\n"
     "rolls the cloud back to that state until 'ferry resume'.", rewind_opts, 1, 1, true,
     cli_cmd_rewind},
    {"resume", "CUSTOMER", "lift a hold set by rewind --hold", "Lifts the hold.", no_opts, 1, 1,
     true, cli_cmd_resume},
    {"replay", "CUSTOMER", "rebuild the projection from seq 0 with the current mapping",
     "Rebuilds the projection with the current mapping (after a mapping fix). The next sync\n"
     "sends only what changed.", no_opts, 1, 1, true, cli_cmd_replay},
    {"history", "CUSTOMER", "the audit trail of cloud calls",
     "Every cloud call made for the customer: when, its result, the fields it changed and the\n"
     "event seqs that caused it.", history_opts, 1, 1, true, cli_cmd_history},
    {"backup", "DIR", "copy the whole data directory, consistently, into a new directory",
     "Writes a consistent copy of the data directory (every customer, as of one moment) into\n"
     "DIR, which must not exist, as a data directory of its own: 'ferry --data DIR ...' reads\n"
     "it, and putting it in place of the data directory (while nothing runs) restores it. The\n"
     "table files are hard-linked when DIR is on the same file system. While ferryd runs, ask\n"
     "it instead: POST /v1/backup {\"dir\": \"/absolute/DIR\"}.", no_opts, 1, 1, false,
     cli_cmd_backup},
    {"explain", "CUSTOMER E/KEY", "why an entity looks the way it does",
     "An entity's desired and applied payload, its cloud id, and the legacy rows (with versions\n"
     "and seqs) it was built from.", json_opts, 2, 2, true, cli_cmd_explain},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage_all(FILE *out) {
  fprintf(out,
          "usage: ferry [--data DIR] [--config FILE] COMMAND [ARGS]\n\n"
          "Keeps a customer's cloud account in step with their legacy data.\n\n"
          "Commands:\n");
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(out, "\nGlobal options:\n"
               "  --data DIR     data directory (default: the config's data, else ./ferry-data)\n"
               "  --config FILE  configuration file (SPEC §6)\n"
               "  --version      print the version\n"
               "Run 'ferry COMMAND --help' for a command's options.\n"
               "Exit status: 0 ok, 1 runtime failure, 2 invalid usage or input, 3 busy.\n");
}

static void usage_command(FILE *out, const cli_command *c) {
  fprintf(out, "usage: ferry %s %s%s\n\n%s\n", c->name, c->usage,
          c->opts[0].name ? " [OPTIONS]" : "", c->help);
  if (c->opts[0].name) fprintf(out, "\nOptions:\n");
  for (const cli_opt *o = c->opts; o->name; o++) {
    char left[64];
    snprintf(left, sizeof left, "--%s%s%s", o->name, o->has_arg ? " " : "",
             o->has_arg ? o->arg : "");
    fprintf(out, "  %-28s %s\n", left, o->help);
  }
}

const char *cli_arg(const cli_args *a, const char *name) {
  for (int i = 0; a->opts[i].name; i++)
    if (strcmp(a->opts[i].name, name) == 0) return a->set[i] ? a->val[i] : NULL;
  return NULL;
}

bool cli_flag(const cli_args *a, const char *name) { return cli_arg(a, name) != NULL; }

/* Parses argv (after the command name) against c's option table. Returns 0,
 * 2 on a usage error (printed), or -1 when --help was asked for. */
static int parse_args(const cli_command *c, int argc, char **argv, cli_args *a) {
  bool opts_done = false;
  memset(a, 0, sizeof *a);
  a->opts = c->opts;
  for (int i = 0; i < argc; i++) {
    const char *arg = argv[i];
    if (!opts_done && strcmp(arg, "--") == 0) { opts_done = true; continue; }
    if (!opts_done && (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)) return -1;
    if (opts_done || arg[0] != '-' || strcmp(arg, "-") == 0) {
      if (a->npos >= CLI_MAX_POS || a->npos >= c->max_pos) {
        fprintf(stderr, "ferry %s: unexpected argument '%s'\n", c->name, arg);
        return 2;
      }
      a->pos[a->npos++] = arg;
      continue;
    }
    const char *name = arg + (arg[1] == '-' ? 2 : 1);
    const char *eq = strchr(name, '=');
    size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
    int k = -1;
    for (int j = 0; c->opts[j].name; j++)
      if (strlen(c->opts[j].name) == nlen && strncmp(c->opts[j].name, name, nlen) == 0) k = j;
    if (k < 0) {
      fprintf(stderr, "ferry %s: unknown option '%s' (see 'ferry %s --help')\n", c->name, arg,
              c->name);
      return 2;
    }
    if (c->opts[k].has_arg) {
      if (eq) a->val[k] = eq + 1;
      else if (i + 1 < argc) a->val[k] = argv[++i];
      else {
        fprintf(stderr, "ferry %s: option --%s needs a value (%s)\n", c->name, c->opts[k].name,
                c->opts[k].arg);
        return 2;
      }
    } else if (eq) {
      fprintf(stderr, "ferry %s: option --%s takes no value\n", c->name, c->opts[k].name);
      return 2;
    } else {
      a->val[k] = "";
    }
    a->set[k] = true;
  }
  if (a->npos < c->min_pos) {
    fprintf(stderr, "ferry %s: missing arguments\nusage: ferry %s %s\n", c->name, c->name,
            c->usage);
    return 2;
  }
  return 0;
}

int main(int argc, char **argv) {
  cli_env env = {NULL, NULL, NULL};
  const char *data_flag = NULL;
  int i = 1, rc = 0;
  ferry_error err;
  ferry_error_clear(&err);

  for (; i < argc && argv[i][0] == '-'; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage_all(stdout);
      return 0;
    } else if (strcmp(argv[i], "--version") == 0) {
      printf("ferry %s\n", FERRY_VERSION);
      return 0;
    } else if ((strcmp(argv[i], "--data") == 0 || strcmp(argv[i], "--config") == 0) &&
               i + 1 < argc) {
      if (argv[i][2] == 'd') data_flag = argv[++i];
      else env.config_path = argv[++i];
    } else if (strncmp(argv[i], "--data=", 7) == 0) {
      data_flag = argv[i] + 7;
    } else if (strncmp(argv[i], "--config=", 9) == 0) {
      env.config_path = argv[i] + 9;
    } else {
      fprintf(stderr, "ferry: unknown or incomplete option '%s'\n", argv[i]);
      usage_all(stderr);
      return 2;
    }
  }
  if (i >= argc) {
    usage_all(stderr);
    return 2;
  }
  if (strcmp(argv[i], "help") == 0) {
    usage_all(stdout);
    return 0;
  }
  const cli_command *cmd = NULL;
  for (size_t k = 0; k < NCOMMANDS; k++)
    if (strcmp(commands[k].name, argv[i]) == 0) cmd = &commands[k];
  if (!cmd) {
    fprintf(stderr, "ferry: unknown command '%s' (see 'ferry --help')\n", argv[i]);
    return 2;
  }
  cli_args args;
  rc = parse_args(cmd, argc - i - 1, argv + i + 1, &args);
  if (rc == -1) {
    usage_command(stdout, cmd);
    return 0;
  }
  if (rc) return rc;

  if (env.config_path) {
    ferry_status st = ferry_config_load(&env.cfg, env.config_path, &err);
    if (st) return cli_fail(&err);
  } else if (cmd->needs_config) {
    fprintf(stderr, "ferry %s: needs --config FILE (the mapping and the cloud are set there)\n",
            cmd->name);
    return 2;
  }
  env.data_dir = data_flag ? data_flag : (env.cfg && env.cfg->data) ? env.cfg->data : "./ferry-data";
  rc = cmd->run(&env, &args);
  ferry_config_free(env.cfg);
  return rc;
}
