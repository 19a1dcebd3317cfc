/* A table-driven parser for the tools' long options (ferry-cloudsim, ferry-gen).
 *
 * One row per option: its name, the kind of value it takes, where in the tool's config struct
 * the value lands, and its --help line. Accepts "--name value" and "--name=value"; flags take
 * no value. Checks that involve several options stay with each tool.
 */
#ifndef FERRY_TOOLS_OPTABLE_H
#define FERRY_TOOLS_OPTABLE_H

#include <stddef.h>
#include <stdio.h>

typedef enum {
  OPT_STRING, /* const char *, pointing into argv */
  OPT_RATE,   /* double, a probability 0..1 */
  OPT_SCALE,  /* double, above 0 and at most 100 */
  OPT_COUNT,  /* unsigned long, a whole number up to the table's max_count */
  OPT_FLAG    /* bool, set when given */
} opt_kind;

typedef struct opt_def {
  const char *name;
  opt_kind kind;
  size_t offset; /* of the field in the config struct */
  const char *metavar, *help;
} opt_def;

typedef struct opt_table {
  const char *prog;          /* for messages: "ferry-gen: ..." */
  const opt_def *defs;
  size_t n;
  unsigned long max_count;   /* bounds OPT_COUNT, so that a typo (an extra digit) fails loudly */
} opt_table;

/* Parses argv[1..] into cfg. An argument that is not an option goes to positional (NULL: none
 * are accepted), which returns 0 or 2 after its own message. Returns 0, or 2 (the usage exit
 * status) after printing what was wrong to stderr. */
int opt_parse(const opt_table *t, void *cfg, int argc, char **argv,
              int (*positional)(void *cfg, const char *arg));

/* Prints the option lines of --help, the left column width wide. */
void opt_usage(const opt_table *t, FILE *out, int width);

#endif
