/*
 * Decoding legacy changes (SPEC §1): NDJSON and protobuf batches in, validated
 * changes out, each packed as a ferry.v1.Change ready for ferry_store_append.
 *
 * Validation is complete: every invalid change is reported with its line (or
 * message index), the field and the reason; the decoder never stops at the
 * first error, so a user fixes a file in one pass.
 */
#ifndef FERRY_CHANGE_H
#define FERRY_CHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/ferry.h"
#include "ferry/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Limits from SPEC §1. */
#define FERRY_TABLE_MAX 128
#define FERRY_KEY_MAX 1024
#define FERRY_COLUMN_MAX 128
#define FERRY_ID_MAX 256
#define FERRY_LINE_MAX (16u * 1024 * 1024) /* one NDJSON line */

typedef enum ferry_format { FERRY_FORMAT_NDJSON = 0, FERRY_FORMAT_PROTOBUF = 1 } ferry_format;

typedef struct ferry_decode_opts {
  const char *customer; /* the customer the batch is for (checked against "customer") */
  bool skip_invalid;    /* keep the valid changes and report the invalid ones */
  size_t max_errors;    /* stop listing after this many (0: 1000) */
} ferry_decode_opts;

/* One invalid change. */
typedef struct ferry_change_error {
  uint64_t line;     /* 1-based NDJSON line, or 1-based message index for protobuf */
  char field[160];   /* "version", "row.Email", "" for the whole line */
  char reason[256];
  const char *text;  /* the line as given (NDJSON), borrowed from the batch */
  size_t text_len;
} ferry_change_error;

typedef struct ferry_batch ferry_batch;

/*
 * Decodes and validates buf. Returns FERRY_OK with *out set when every change
 * is valid, or when opts->skip_invalid is set (then the batch holds the valid
 * ones and lists the rest as errors). Returns FERRY_EINVAL with *out set and
 * its error list filled when a change is invalid and skip_invalid is not set;
 * the caller must then append nothing. *out is the caller's (ferry_batch_free).
 * buf must outlive the batch (errors point into it).
 */
ferry_status ferry_batch_decode(ferry_format fmt, const char *buf, size_t len,
                                const ferry_decode_opts *opts, ferry_batch **out, ferry_error *err);

/*
 * What SPEC §1 leaves open, as ferry_batch_decode does it:
 * - null for an optional field (id, at, customer; row on a delete) is the
 *   same as leaving it out.
 * - A row on a delete is invalid ("row: not allowed on delete"). An upsert
 *   needs a row; in NDJSON {} will do, in protobuf an absent and an empty row
 *   look the same, so an upsert needs at least one column there.
 * - One ferry_change_error per invalid change: the first problem gives field
 *   and reason, further ones are appended to reason ("; also version: ...").
 * - Protobuf: errors are numbered by the change's 1-based position; line 0
 *   is the batch itself (bytes that are not a ChangeBatch, or a batch
 *   customer that does not match) and then no change is decoded. Unknown
 *   fields are invalid as in NDJSON; strings must be UTF-8 without NUL bytes.
 * - Packed changes always have an id (the default filled in) and no customer.
 * - On FERRY_EINVAL the batch lists the errors and holds no changes.
 * - With opts->customer NULL any "customer" value is accepted.
 */

size_t ferry_batch_count(const ferry_batch *b);
const ferry_change_ref *ferry_batch_changes(const ferry_batch *b);
size_t ferry_batch_error_count(const ferry_batch *b); /* errors listed (capped at max_errors) */
uint64_t ferry_batch_invalid_total(const ferry_batch *b); /* all invalid changes, even past the cap */
const ferry_change_error *ferry_batch_errors(const ferry_batch *b);
void ferry_batch_free(ferry_batch *b);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_CHANGE_H */
