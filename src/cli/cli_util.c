/*
 * Helpers every command shares: error printing with the right exit status,
 * opening the store, argument checks.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"

int cli_fail(const ferry_error *err) {
  fprintf(stderr, "ferry: %s\n", err->msg[0] ? err->msg : ferry_strerror(err->code));
  return ferry_status_exit_code(err->code);
}

int cli_failf(ferry_status st, const char *fmt, ...) {
  va_list ap;
  fputs("ferry: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return ferry_status_exit_code(st);
}

int cli_open_store(const cli_env *env, ferry_store_mode mode, ferry_store **out) {
  ferry_error err;
  ferry_error_clear(&err);
  if (ferry_store_open(out, env->data_dir, mode, &err) != FERRY_OK) return cli_fail(&err);
  return 0;
}

bool cli_parse_u64(const char *opt, const char *text, uint64_t *out) {
  char *end = NULL;
  errno = 0;
  unsigned long long v = text && *text != '-' ? strtoull(text, &end, 10) : 0;
  if (!text || !*text || *text == '-' || errno || !end || *end) {
    fprintf(stderr, "ferry: --%s: expected a non-negative integer, got '%s'\n", opt,
            text ? text : "");
    return false;
  }
  *out = v;
  return true;
}

bool cli_check_customer(const char *customer) {
  if (ferry_customer_valid(customer)) return true;
  fprintf(stderr,
          "ferry: invalid customer id '%s': expected 1-%d characters of [A-Za-z0-9_.-]\n",
          customer, FERRY_CUSTOMER_MAX);
  return false;
}
