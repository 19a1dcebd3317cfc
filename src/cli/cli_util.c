/*
 * Helpers every command shares: error printing with the right exit status,
 * opening the store, argument checks.
 */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* When ferryd holds the directory, DATA/ferryd.json names its pid and
 * address: point the user at the service's endpoints instead. */
static void explain_ferryd(const char *data_dir, const ferry_error *err) {
  char path[4096], buf[4096];
  json_error_t je;
  if (snprintf(path, sizeof path, "%s/ferryd.json", data_dir) >= (int)sizeof path) return;
  FILE *f = fopen(path, "r");
  if (!f) return;
  size_t n = fread(buf, 1, sizeof buf, f); /* a few dozen bytes; more is not ferryd's */
  fclose(f);
  json_t *o = json_loadb(buf, n, 0, &je);
  const char *listen = json_string_value(json_object_get(o, "listen"));
  json_int_t pid = json_integer_value(json_object_get(o, "pid"));
  char needle[48];
  snprintf(needle, sizeof needle, "pid %lld", (long long)pid);
  if (listen && pid > 0 && strstr(err->msg, needle))
    fprintf(stderr,
            "ferry: pid %lld is ferryd, listening on %s: while it runs, change data through its "
            "endpoints (POST http://%s/v1/customers/CUSTOMER/changes, .../rewind, .../resume, "
            ".../replay, .../retry-failed, and POST http://%s/v1/backup; see docs/service.md); "
            "read-only commands (status, log, history, explain) work as they are\n",
            (long long)pid, listen, listen, listen);
  json_decref(o);
}

int cli_open_store(const cli_env *env, ferry_store_mode mode, ferry_store **out) {
  ferry_error err;
  ferry_error_clear(&err);
  if (ferry_store_open(out, env->data_dir, mode, &err) != FERRY_OK) {
    int rc = cli_fail(&err);
    if (err.code == FERRY_EBUSY) explain_ferryd(env->data_dir, &err);
    return rc;
  }
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
