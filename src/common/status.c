/*
 * Status codes, their messages and their exit statuses; the error record.
 */
#include "ferry/ferry.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *ferry_strerror(ferry_status st) {
  /* No default: the compiler flags a status without a message. */
  switch (st) {
  case FERRY_OK: return "ok";
  case FERRY_ENOMEM: return "out of memory";
  case FERRY_EINVAL: return "invalid input";
  case FERRY_EIO: return "I/O error";
  case FERRY_EBUSY: return "busy";
  case FERRY_ENOTFOUND: return "not found";
  case FERRY_ECONFIG: return "invalid configuration";
  case FERRY_EMAPPING: return "invalid mapping";
  case FERRY_ETOOBIG: return "too large";
  case FERRY_ECORRUPT: return "stored data is corrupt";
  case FERRY_ECLOUD: return "cloud error";
  case FERRY_EFAILED: return "entities failed";
  case FERRY_EMAPPING_CHANGED: return "mapping changed";
  case FERRY_EAUTH: return "not authorised";
  case FERRY_EINTERNAL: return "internal error";
  }
  return "unknown status";
}

int ferry_status_exit_code(ferry_status st) {
  switch (st) {
  case FERRY_OK: return 0;
  case FERRY_EINVAL:
  case FERRY_ECONFIG:
  case FERRY_EMAPPING:
  case FERRY_ETOOBIG:
  case FERRY_ENOTFOUND:
  case FERRY_EMAPPING_CHANGED:
  case FERRY_EAUTH: return 2;
  case FERRY_EBUSY: return 3;
  case FERRY_ENOMEM:
  case FERRY_EIO:
  case FERRY_ECORRUPT:
  case FERRY_ECLOUD:
  case FERRY_EFAILED:
  case FERRY_EINTERNAL: return 1;
  }
  return 1;
}

ferry_status ferry_error_set(ferry_error *err, ferry_status code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  }
  return code;
}

void ferry_error_clear(ferry_error *err) {
  if (err) {
    err->code = FERRY_OK;
    err->msg[0] = '\0';
  }
}

int ferry_customer_valid(const char *c) {
  size_t n = 0;
  if (!c) return 0;
  for (; c[n]; n++) {
    char ch = c[n];
    int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             ch == '_' || ch == '.' || ch == '-';
    if (!ok || n >= FERRY_CUSTOMER_MAX) return 0;
  }
  return n > 0;
}
