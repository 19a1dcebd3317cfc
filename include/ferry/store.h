/*
 * The ferry store: one RocksDB database holding every customer's event log and
 * projection state, in column families, every key prefixed by the customer
 * (one length byte, then the id) so a customer is one contiguous key range.
 *
 * One process writes a data directory at a time (a pid lock file beside the
 * database); others may open it read-only (a RocksDB secondary instance that
 * follows the writer).
 *
 * The log is append-only. The customer's head seq (family "meta") is the
 * commit record: events and dedup entries above it are leftovers of a batch
 * that never committed, ignored by readers and removed when the store opens.
 */
#ifndef FERRY_STORE_H
#define FERRY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/ferry.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ferry_store ferry_store;

typedef enum ferry_store_mode {
  FERRY_STORE_WRITE = 0, /* the single writer; takes the pid lock or fails with FERRY_EBUSY */
  FERRY_STORE_READ = 1   /* read-only; works while a writer holds the directory */
} ferry_store_mode;

/* Column families. The numbers index internal tables; names are on disk. */
typedef enum ferry_cf {
  FERRY_CF_EVENTS = 0,  /* seq (u64 BE) -> ferry.v1.Event */
  FERRY_CF_DEDUP,       /* change id -> seq (u64 BE) */
  FERRY_CF_MIRROR,      /* table \0 row key -> ferry.v1.MirrorRow */
  FERRY_CF_INDEX,       /* join index entries */
  FERRY_CF_DESIRED,     /* entity type \0 entity key -> desired payload */
  FERRY_CF_APPLIED,     /* entity type \0 entity key -> applied payload + cloud id */
  FERRY_CF_DIRTY,       /* rank, entity type, entity key -> empty */
  FERRY_CF_AUDIT,       /* audit seq (u64 BE) -> ferry.v1.AuditRecord */
  FERRY_CF_META,        /* name -> value (head seq, checkpoints, counters) */
  FERRY_CF_COUNT
} ferry_cf;

/*
 * Opens (creating if needed) the store in dir. In FERRY_STORE_WRITE mode a
 * second writer gets FERRY_EBUSY with "data directory DIR is in use by pid N".
 * On open the writer removes leftovers of uncommitted appends.
 */
ferry_status ferry_store_open(ferry_store **out, const char *dir, ferry_store_mode mode,
                              ferry_error *err);
/* Closes the store; accepts NULL. Waits for queued appends to finish. */
void ferry_store_close(ferry_store *s);

/* For a FERRY_STORE_READ store: catch up with the writer's latest writes. */
ferry_status ferry_store_refresh(ferry_store *s, ferry_error *err);

/* ------------------------------------------------------------------ log --- */

/* One change to append: its id and its packed ferry.v1.Change. Borrowed. */
typedef struct ferry_change_ref {
  const char *id;
  size_t id_len;
  const uint8_t *pb;
  size_t pb_len;
} ferry_change_ref;

typedef struct ferry_append_result {
  uint64_t appended;   /* changes that became events */
  uint64_t duplicates; /* changes whose id was already in the log (or earlier in the batch) */
  uint64_t first_seq;  /* seq of the first appended event (0 if none) */
  uint64_t head_seq;   /* the customer's head seq after the append */
} ferry_append_result;

/*
 * Appends a batch to the customer's log: all of it or nothing. Assigns
 * consecutive seqs, drops duplicates by change id, and returns only once the
 * write-ahead log is synced. Thread-safe; concurrent callers share one sync
 * (group commit). Large batches are written in chunks; the head seq, written
 * last, commits them.
 */
ferry_status ferry_store_append(ferry_store *s, const char *customer, const ferry_change_ref *changes,
                                size_t n, ferry_append_result *res, ferry_error *err);

/* Async form for the service: cb runs on the store's commit thread when the
 * batch is durable (or failed). changes must stay valid until cb runs. */
typedef void (*ferry_append_cb)(void *arg, ferry_status st, const ferry_append_result *res,
                                const ferry_error *err);
ferry_status ferry_store_append_async(ferry_store *s, const char *customer,
                                      const ferry_change_ref *changes, size_t n, ferry_append_cb cb,
                                      void *arg);

/* The customer's head seq (0 when the customer has no events). */
ferry_status ferry_store_head_seq(ferry_store *s, const char *customer, uint64_t *out,
                                  ferry_error *err);

/* Calls fn for every customer that has a log, in byte order; stops if fn returns non-zero. */
typedef int (*ferry_customer_fn)(void *arg, const char *customer);
ferry_status ferry_store_customers(ferry_store *s, ferry_customer_fn fn, void *arg, ferry_error *err);

/* Iterates a customer's events from from_seq (inclusive) to the head. */
typedef struct ferry_log_iter ferry_log_iter;
ferry_status ferry_log_iter_open(ferry_store *s, const char *customer, uint64_t from_seq,
                                 ferry_log_iter **out, ferry_error *err);
/* Returns 1 and the next event (packed ferry.v1.Event, valid until the next
 * call), 0 at the end, -1 on error (see ferry_log_iter_error). */
int ferry_log_iter_next(ferry_log_iter *it, uint64_t *seq, const uint8_t **event, size_t *len);
ferry_status ferry_log_iter_error(ferry_log_iter *it, ferry_error *err);
void ferry_log_iter_close(ferry_log_iter *it);

/* ------------------------------------------------- generic per-customer KV --- */
/* For the projector and the applier: keys are relative to the customer prefix. */

/* Reads one value; FERRY_ENOTFOUND if absent. *val is malloc'd, caller frees. */
ferry_status ferry_kv_get(ferry_store *s, ferry_cf cf, const char *customer, const void *key,
                          size_t klen, char **val, size_t *vlen, ferry_error *err);

/* A write batch across families, committed atomically. */
typedef struct ferry_wbatch ferry_wbatch;
ferry_wbatch *ferry_wbatch_create(ferry_store *s, const char *customer);
void ferry_wbatch_put(ferry_wbatch *b, ferry_cf cf, const void *key, size_t klen, const void *val,
                      size_t vlen);
void ferry_wbatch_delete(ferry_wbatch *b, ferry_cf cf, const void *key, size_t klen);
/* Deletes [lo, hi) (relative keys); hi NULL means to the end of the customer's range. */
void ferry_wbatch_delete_range(ferry_wbatch *b, ferry_cf cf, const void *lo, size_t lolen,
                               const void *hi, size_t hilen);
size_t ferry_wbatch_count(const ferry_wbatch *b);
/* sync: wait for the WAL to reach the disk. */
ferry_status ferry_wbatch_commit(ferry_wbatch *b, bool sync, ferry_error *err);
void ferry_wbatch_destroy(ferry_wbatch *b);

/* Iterates keys in [lo, hi) of one family within the customer's range
 * (lo NULL: from the start, hi NULL: to the end). */
typedef struct ferry_kv_iter ferry_kv_iter;
ferry_status ferry_kv_iter_open(ferry_store *s, ferry_cf cf, const char *customer, const void *lo,
                                size_t lolen, const void *hi, size_t hilen, ferry_kv_iter **out,
                                ferry_error *err);
/* Returns 1 with key/value (valid until the next call), 0 at the end, -1 on error. */
int ferry_kv_iter_next(ferry_kv_iter *it, const char **key, size_t *klen, const char **val,
                       size_t *vlen);
ferry_status ferry_kv_iter_error(ferry_kv_iter *it, ferry_error *err);
void ferry_kv_iter_close(ferry_kv_iter *it);

/* Big-endian u64 helpers for keys. */
void ferry_be64_put(uint8_t out[8], uint64_t v);
uint64_t ferry_be64_get(const uint8_t in[8]);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_STORE_H */
