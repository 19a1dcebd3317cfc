#include "common/optable.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const opt_def *find(const opt_table *t, const char *name, size_t len) {
  for (size_t i = 0; i < t->n; i++)
    if (strlen(t->defs[i].name) == len && memcmp(t->defs[i].name, name, len) == 0) return &t->defs[i];
  return NULL;
}

/* Stores value into the field d names; 0, or 2 after a message when it does not fit. */
static int set_value(const opt_table *t, void *cfg, const opt_def *d, const char *value) {
  char *field = (char *)cfg + d->offset, *end = NULL;
  errno = 0;
  switch (d->kind) {
  case OPT_STRING: *(const char **)(void *)field = value; return 0;
  case OPT_FLAG: *(bool *)(void *)field = true; return 0;
  case OPT_RATE:
  case OPT_SCALE: {
    double v = strtod(value, &end);
    bool rate = d->kind == OPT_RATE;
    if (errno || end == value || *end || !isfinite(v) || (rate ? v < 0 || v > 1 : v <= 0 || v > 100)) {
      fprintf(stderr, "%s: --%s wants %s, not '%s'\n", t->prog, d->name,
              rate ? "a probability 0..1" : "a number above 0 and at most 100", value);
      return 2;
    }
    *(double *)(void *)field = v;
    return 0;
  }
  case OPT_COUNT: {
    unsigned long long n = strtoull(value, &end, 10);
    if (errno || end == value || *end || value[0] == '-' || n > t->max_count) {
      fprintf(stderr, "%s: --%s wants a whole number up to %lu, not '%s'\n", t->prog, d->name,
              t->max_count, value);
      return 2;
    }
    *(unsigned long *)(void *)field = (unsigned long)n;
    return 0;
  }
  }
  return 2;
}

int opt_parse(const opt_table *t, void *cfg, int argc, char **argv,
              int (*positional)(void *cfg, const char *arg)) {
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strncmp(arg, "--", 2) != 0) {
      if (!positional) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", t->prog, arg);
        return 2;
      }
      if (positional(cfg, arg)) return 2;
      continue;
    }
    const char *name = arg + 2, *eq = strchr(name, '=');
    const opt_def *d = find(t, name, eq ? (size_t)(eq - name) : strlen(name));
    if (!d) {
      fprintf(stderr, "%s: unknown option '%s' (see --help)\n", t->prog, arg);
      return 2;
    }
    const char *value = eq ? eq + 1 : NULL;
    if (d->kind == OPT_FLAG && value) {
      fprintf(stderr, "%s: --%s takes no value\n", t->prog, d->name);
      return 2;
    }
    if (d->kind != OPT_FLAG && !value) {
      if (i + 1 >= argc) {
        fprintf(stderr, "%s: --%s needs a value (%s)\n", t->prog, d->name, d->metavar);
        return 2;
      }
      value = argv[++i];
    }
    if (set_value(t, cfg, d, value ? value : "")) return 2;
  }
  return 0;
}

void opt_usage(const opt_table *t, FILE *out, int width) {
  for (size_t i = 0; i < t->n; i++) {
    const opt_def *d = &t->defs[i];
    char left[64];
    snprintf(left, sizeof left, "--%s%s%s", d->name, d->metavar ? " " : "", d->metavar ? d->metavar : "");
    fprintf(out, "  %-*s %s\n", width, left, d->help);
  }
}
