/*
 * One decoder's output: the packed changes, their refs and the errors, for a
 * whole batch or for the slice of it one thread decodes. The NDJSON and
 * protobuf decoders fill a part; batch.c runs them and merges the parts.
 */
#ifndef FERRY_INGEST_PART_H
#define FERRY_INGEST_PART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/change.h"
#include "common/arena.h"
#include "ingest/check.h"

typedef struct ingest_part {
  arena out;       /* packed changes */
  ferry_change_ref *refs; /* one per valid change, in input order */
  size_t nrefs, refs_cap;
  ferry_change_error *errs; /* listed errors, in input order, at most max_errors */
  size_t nerrs, errs_cap;
  uint64_t invalid;     /* every invalid change, listed or not */
  uint64_t units;       /* lines (NDJSON) or messages (protobuf) seen */
  const char *customer; /* from the options; may be NULL */
  size_t max_errors;
  bool skip_invalid;
  bool slow_only; /* NDJSON: jansson for every line (tests compare the paths) */
} ingest_part;

/* in_len is the input the part decodes; it bounds the arena and the refs. */
void ingest_part_init(ingest_part *p, const ferry_decode_opts *o, size_t in_len);
void ingest_part_free(ingest_part *p);

/* True when output is still wanted: without skip_invalid the first invalid
 * change dooms the batch, so encoding the rest would be wasted. */
static inline bool ingest_part_wants_output(const ingest_part *p) {
  return p->skip_invalid || p->invalid == 0;
}

/* n bytes of output for one change, or NULL (FERRY_ENOMEM or FERRY_ETOOBIG in *st). */
uint8_t *ingest_part_reserve(ingest_part *p, size_t n, ferry_status *st);

/* Records a valid change written at pb. */
ferry_status ingest_part_accept(ingest_part *p, const uint8_t *pb, size_t len, const uint8_t *id,
                                size_t id_len);

/* Records an invalid change (pr finished by the caller); text may be NULL. */
ferry_status ingest_part_reject(ingest_part *p, uint64_t line, const ingest_problems *pr,
                                const char *text, size_t text_len);

/* The decoders fill p and return FERRY_OK unless memory ran out (or an
 * internal limit was hit). Invalid input is recorded in p, not returned.
 * Changes are numbered from 1 within the part; the caller renumbers the
 * errors of a second part. */
ferry_status ingest_ndjson_decode(ingest_part *p, const char *buf, size_t len);

/* Protobuf in two steps, so that the changes can be shared among threads:
 * check the batch as a whole (an error at index 0 in p if it is not a batch
 * for this customer, and *changes 0), then decode changes [first, first + n). */
ferry_status ingest_protobuf_check(ingest_part *p, const char *buf, size_t len, size_t *changes);
ferry_status ingest_protobuf_decode_range(ingest_part *p, const char *buf, size_t len, size_t first,
                                          size_t n);

#endif /* FERRY_INGEST_PART_H */
