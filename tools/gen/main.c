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

#include "common/optable.h"
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

#define AT(field) offsetof(options, field)

static const opt_def OPTIONS[] = {
    {"seed", OPT_COUNT, AT(seed), "N", "seed of everything generated (default 1)"},
    {"scale", OPT_SCALE, AT(scale), "F", "multiply every default size by F (default 1)"},
    {"contacts", OPT_COUNT, AT(contacts), "N", "Contacts rows (default 20000)"},
    {"phones", OPT_COUNT, AT(phones), "N", "ContactPhones rows (default 40000)"},
    {"properties", OPT_COUNT, AT(properties), "N", "Properties rows (default 8000)"},
    {"tenancies", OPT_COUNT, AT(tenancies), "N", "Tenancies rows (default 6000)"},
    {"suburbs", OPT_COUNT, AT(suburbs), "N", "Suburbs rows (default 500)"},
    {"changes", OPT_COUNT, AT(changes), "N",
     "changes per wave, besides duplicates and late ones (default contacts/20, at least 50)"},
    {"wave", OPT_COUNT, AT(wave), "K", "changes: the wave to write (1, 2, ...)"},
    {"quiet", OPT_FLAG, AT(quiet), NULL, "no summary on stderr"},
    {"help", OPT_FLAG, AT(help), NULL, "print this help"},
};
/* counts are rows of one table: this is far beyond what fits in memory anyway */
static const opt_table TABLE = {"ferry-gen", OPTIONS, sizeof OPTIONS / sizeof OPTIONS[0],
                                100000000UL};

static void usage(FILE *out) {
  fprintf(out, "usage: ferry-gen initial [options] > initial.ndjson\n"
               "       ferry-gen changes --wave K [options] > wave-K.ndjson\n\n"
               "Writes a seeded legacy property-management customer as NDJSON changes: the\n"
               "initial rows, or wave K of changes on top of them. Give every invocation for one\n"
               "customer the same sizes, --seed and --changes.\n\n");
  opt_usage(&TABLE, out, 18);
}

static int command(void *cfg, const char *arg) {
  options *o = cfg;
  if (o->command) {
    fprintf(stderr, "ferry-gen: unexpected argument '%s'\n", arg);
    return 2;
  }
  o->command = arg;
  return 0;
}

/* Parses argv into *o; returns 0 or 2 (usage, already reported). */
static int parse(options *o, int argc, char **argv) {
  memset(o, 0, sizeof *o);
  o->scale = 1;
  o->seed = 1;
  o->changes = o->contacts = o->phones = o->properties = o->tenancies = o->suburbs = DEFAULT;
  if (opt_parse(&TABLE, o, argc, argv, command)) return 2;
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
