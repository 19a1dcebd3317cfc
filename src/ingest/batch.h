/*
 * Internal: the decode entry point with the thread count made explicit, for
 * the benchmark and the tests (ferry_batch_decode picks it by itself).
 */
#ifndef FERRY_INGEST_BATCH_H
#define FERRY_INGEST_BATCH_H

#include <stdbool.h>

#include "ferry/change.h"

/* Batches at least this big are split across two threads when the machine
 * has two cores or more (measured in bench/decode.c: below a few MiB the
 * thread costs more than it saves). */
#define INGEST_PARALLEL_MIN ((size_t)4 << 20)

/* How to decode: what ferry_batch_decode chooses by itself when zeroed. */
typedef struct ingest_tuning {
  int threads;    /* 0 chooses, 1 the calling thread, 2 splits the batch in two */
  bool slow_only; /* NDJSON: no fast path, jansson for every line */
} ingest_tuning;

/* As ferry_batch_decode, tuned. */
ferry_status ingest_batch_decode(ferry_format fmt, const char *buf, size_t len,
                                 const ferry_decode_opts *opts, const ingest_tuning *tune,
                                 ferry_batch **out, ferry_error *err);

#endif /* FERRY_INGEST_BATCH_H */
