/* ferry-gen: writes a seeded legacy property-management customer as NDJSON changes (SPEC §1),
 * for ferry's demo, tests and benchmarks.
 *
 *   ferry-gen initial [options]             the customer's rows, one upsert each
 *   ferry-gen changes --wave K [options]    wave K of changes on top of waves 1..K-1
 *
 * Nothing is stored between runs: `changes --wave K` builds the customer again and applies
 * waves 1..K-1 in memory, writing nothing, before it writes wave K. So every invocation for one
 * customer must get the same sizes, seed and --changes. Output goes to stdout; a one-line
 * summary of what was written goes to stderr (unless --quiet). Exit status: 0 ok, 1 out of
 * memory or a write error, 2 bad usage.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "customer.h"
#include "waves.h"

#define DEFAULT ((unsigned long)-1) /* a count not given on the command line */

typedef struct options {
  const char *command;
  double scale;
  unsigned long seed, wave, changes;
  unsigned long contacts, phones, properties, tenancies, suburbs; /* DEFAULT: not given */
  bool quiet, help;
} options;

typedef enum { ARG_COUNT, ARG_SCALE, ARG_FLAG } arg_kind;

typedef struct opt_def {
  const char *name;
  arg_kind kind;
  size_t offset;
  const char *metavar, *help;
} opt_def;

#define AT(field) offsetof(options, field)

static const opt_def OPTIONS[] = {
    {"seed", ARG_COUNT, AT(seed), "N", "seed of everything generated (default 1)"},
    {"scale", ARG_SCALE, AT(scale), "F", "multiply every default size by F (default 1)"},
    {"contacts", ARG_COUNT, AT(contacts), "N", "Contacts rows (default 20000)"},
    {"phones", ARG_COUNT, AT(phones), "N", "ContactPhones rows (default 40000)"},
    {"properties", ARG_COUNT, AT(properties), "N", "Properties rows (default 8000)"},
    {"tenancies", ARG_COUNT, AT(tenancies), "N", "Tenancies rows (default 6000)"},
    {"suburbs", ARG_COUNT, AT(suburbs), "N", "Suburbs rows (default 500)"},
    {"changes", ARG_COUNT, AT(changes), "N",
     "changes per wave, besides duplicates and late ones (default contacts/20, at least 50)"},
    {"wave", ARG_COUNT, AT(wave), "K", "changes: the wave to write (1, 2, ...)"},
    {"quiet", ARG_FLAG, AT(quiet), NULL, "no summary on stderr"},
    {"help", ARG_FLAG, AT(help), NULL, "print this help"},
};
#define N_OPTIONS (sizeof OPTIONS / sizeof OPTIONS[0])
#define MAX_COUNT 100000000UL /* rows of one table; far beyond what fits in memory anyway */

static void usage(FILE *out) {
  fprintf(out, "usage: ferry-gen initial [options] > initial.ndjson\n"
               "       ferry-gen changes --wave K [options] > wave-K.ndjson\n\n"
               "Writes a seeded legacy property-management customer as NDJSON changes: the\n"
               "initial rows, or wave K of changes on top of them. Give every invocation for one\n"
               "customer the same sizes, --seed and --changes.\n\n");
  for (size_t i = 0; i < N_OPTIONS; i++) {
    char left[48];
    snprintf(left, sizeof left, "--%s%s%s", OPTIONS[i].name, OPTIONS[i].metavar ? " " : "",
             OPTIONS[i].metavar ? OPTIONS[i].metavar : "");
    fprintf(out, "  %-18s %s\n", left, OPTIONS[i].help);
  }
}

static int set_value(options *o, const opt_def *d, const char *value) {
  char *end = NULL;
  void *field = (char *)o + d->offset;
  errno = 0;
  if (d->kind == ARG_FLAG) {
    *(bool *)field = true;
  } else if (d->kind == ARG_SCALE) {
    double f = strtod(value, &end);
    if (errno || end == value || *end || !isfinite(f) || f <= 0 || f > 100) {
      fprintf(stderr, "ferry-gen: --%s wants a number above 0 and at most 100, not '%s'\n", d->name,
              value);
      return 2;
    }
    *(double *)field = f;
  } else {
    unsigned long long n = strtoull(value, &end, 10);
    if (errno || end == value || *end || value[0] == '-' || n > MAX_COUNT) {
      fprintf(stderr, "ferry-gen: --%s wants a whole number up to %lu, not '%s'\n", d->name,
              MAX_COUNT, value);
      return 2;
    }
    *(unsigned long *)field = (unsigned long)n;
  }
  return 0;
}

/* Parses argv into *o; returns 0 or 2 (usage, already reported). */
static int parse(options *o, int argc, char **argv) {
  memset(o, 0, sizeof *o);
  o->scale = 1;
  o->seed = 1;
  o->changes = o->contacts = o->phones = o->properties = o->tenancies = o->suburbs = DEFAULT;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strncmp(arg, "--", 2) != 0) {
      if (o->command) {
        fprintf(stderr, "ferry-gen: unexpected argument '%s'\n", arg);
        return 2;
      }
      o->command = arg;
      continue;
    }
    const char *name = arg + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const opt_def *d = NULL;
    for (size_t k = 0; k < N_OPTIONS; k++)
      if (strlen(OPTIONS[k].name) == len && memcmp(OPTIONS[k].name, name, len) == 0)
        d = &OPTIONS[k];
    if (!d) {
      fprintf(stderr, "ferry-gen: unknown option '%s' (see --help)\n", arg);
      return 2;
    }
    const char *value = eq ? eq + 1 : NULL;
    if (d->kind == ARG_FLAG && value) {
      fprintf(stderr, "ferry-gen: --%s takes no value\n", d->name);
      return 2;
    }
    if (d->kind != ARG_FLAG && !value) {
      if (i + 1 >= argc) {
        fprintf(stderr, "ferry-gen: --%s needs a value (%s)\n", d->name, d->metavar);
        return 2;
      }
      value = argv[++i];
    }
    if (set_value(o, d, value)) return 2;
  }
  if (o->help) return 0;
  if (!o->command || (strcmp(o->command, "initial") && strcmp(o->command, "changes"))) {
    fprintf(stderr, "ferry-gen: say 'initial' or 'changes --wave K' (see --help)\n");
    return 2;
  }
  if (!strcmp(o->command, "changes") && !o->wave) {
    fprintf(stderr, "ferry-gen: changes needs --wave K (1 or more)\n");
    return 2;
  }
  if (!strcmp(o->command, "initial") && o->wave) {
    fprintf(stderr, "ferry-gen: --wave goes with 'changes'\n");
    return 2;
  }
  return 0;
}

/* A size: as given (0 included), else the default times --scale (at least 1). */
static uint32_t size_of(unsigned long given, double deflt, double scale) {
  if (given != DEFAULT) return (uint32_t)given;
  double n = round(deflt * scale);
  return n < 1 ? 1 : (uint32_t)n;
}

static int run(const options *o) {
  gen_sizes z = {size_of(o->contacts, 20000, o->scale), size_of(o->phones, 40000, o->scale),
                 size_of(o->properties, 8000, o->scale), size_of(o->tenancies, 6000, o->scale),
                 size_of(o->suburbs, 500, o->scale)};
  uint32_t changes = o->changes != DEFAULT  ? (uint32_t)o->changes
                     : z.contacts / 20 < 50 ? 50
                                            : z.contacts / 20;
  gen_customer c;
  gen_writer w;
  gen_wave_stats st;
  char line[2048];
  int rc = 1;

  if (gen_customer_build(&c, &z, o->seed)) {
    fprintf(stderr, "ferry-gen: out of memory\n");
    return 1;
  }
  gen_writer_init(&w, o->wave ? NULL : stdout);
  gen_writer_wave(&w, 0, gen_wave_start(0) - 27 * 86400); /* the snapshot: 2026-01-05 */
  if (gen_customer_snapshot(&c, &w)) goto done;
  if (!o->wave && !o->quiet)
    fprintf(stderr,
            "ferry-gen: initial: %u suburbs, %u contacts, %u phones, %u properties, "
            "%u tenancies: %llu lines\n",
            z.suburbs, z.contacts, z.phones, z.properties, z.tenancies,
            (unsigned long long)w.written);
  for (unsigned k = 1; k <= o->wave; k++) {
    if (k == o->wave) w.out = stdout;
    if (gen_wave(&c, &w, k, changes, &st)) goto done;
  }
  if (o->wave && !o->quiet) {
    gen_wave_describe(&st, (unsigned)o->wave, line, sizeof line);
    fprintf(stderr, "ferry-gen: %s", line);
  }
  if (fflush(stdout) == 0 && !w.failed) rc = 0;
done:
  if (rc) fprintf(stderr, "ferry-gen: could not write the changes: %s\n", strerror(errno));
  gen_writer_free(&w);
  gen_customer_free(&c);
  return rc;
}

int main(int argc, char **argv) {
  options o;
  int rc = parse(&o, argc, argv);
  if (rc || o.help) {
    usage(rc ? stderr : stdout);
    return rc;
  }
  return run(&o);
}
