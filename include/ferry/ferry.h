/*
 * ferry: keeps a customer's cloud account in step with their legacy data.
 *
 * This header holds what every part of libferry shares: the status codes,
 * the error record that carries detail text back to the caller, and the
 * mapping from a status to the CLI's exit status (SPEC §4).
 */
#ifndef FERRY_FERRY_H
#define FERRY_FERRY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FERRY_VERSION "0.1.0"

/* Numbers are stable and never reused. */
typedef enum ferry_status {
  FERRY_OK = 0,
  FERRY_ENOMEM = 1,          /* out of memory */
  FERRY_EINVAL = 2,          /* invalid input or usage */
  FERRY_EIO = 3,             /* storage or file I/O failed */
  FERRY_EBUSY = 4,           /* data dir or customer held by another run */
  FERRY_ENOTFOUND = 5,       /* no such customer, entity, key ... */
  FERRY_ECONFIG = 6,         /* configuration file invalid */
  FERRY_EMAPPING = 7,        /* mapping file invalid */
  FERRY_ETOOBIG = 8,         /* input over a size limit */
  FERRY_ECORRUPT = 9,        /* stored data does not decode */
  FERRY_ECLOUD = 10,         /* cloud unreachable or answered badly */
  FERRY_EFAILED = 11,        /* some entities failed (4xx) */
  FERRY_EMAPPING_CHANGED = 12, /* mapping differs from the projection's */
  FERRY_EAUTH = 13,          /* missing or wrong token */
  FERRY_EINTERNAL = 14       /* a bug: an invariant did not hold */
} ferry_status;

/* A short, static description of a status. */
const char *ferry_strerror(ferry_status st);

/* The CLI exit status for a status: 0 ok, 1 runtime, 2 usage/input, 3 busy. */
int ferry_status_exit_code(ferry_status st);

/* Detail for a failed call: the caller owns it (usually on its stack). */
typedef struct ferry_error {
  ferry_status code;
  char msg[1024];
} ferry_error;

/* Sets *err (if not NULL) to code and a printf-style message; returns code. */
ferry_status ferry_error_set(ferry_error *err, ferry_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Clears an error record to FERRY_OK and an empty message. */
void ferry_error_clear(ferry_error *err);

/* Customer ids: 1..128 bytes of [A-Za-z0-9_.-]. */
#define FERRY_CUSTOMER_MAX 128
int ferry_customer_valid(const char *customer);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_FERRY_H */
