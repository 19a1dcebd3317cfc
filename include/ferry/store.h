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

/* Process-wide malloc settings for a process that folds: keeps RocksDB's
 * memtable blocks from fragmenting the heap (glibc), and bounds tcmalloc's
 * per-thread caches, so memory stays near the store's budget.
 * ferry_projector_open calls it (once per process); a process that only
 * ingests does not need it, and with glibc appends run ~5% faster without
 * the fixed mmap threshold. */
void ferry_store_tune_process(void);
/* Hands freed heap memory back to the system (glibc: malloc_trim; nothing
 * with tcmalloc, see below). A long fold calls it after each batch: the
 * batches and flushed memtables leave holes between longer-lived
 * allocations that the heap cannot shrink past. */
void ferry_store_release_memory(void);
/* Brackets a long fold (nestable, thread-safe). With tcmalloc, while one
 * runs, pages freed are returned to the system at once (each flushed
 * memtable frees 32-64 MiB): this keeps a fold within the memory budget.
 * Outside them tcmalloc keeps freed pages for reuse, which is what makes a
 * single change fast. Nothing with glibc. */
void ferry_store_bulk_memory_begin(void);
void ferry_store_bulk_memory_end(void);

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

/* A writer: makes every write so far durable by syncing the write-ahead log,
 * for callers that commit several batches with sync=false and then need them
 * all on disk at once. FERRY_EINVAL on a READ store. */
ferry_status ferry_store_sync_wal(ferry_store *s, ferry_error *err);

/* A writer: compacts the customer's keys of one family, so that what a
 * ferry_wbatch_delete_range dropped is gone from the files, not only hidden.
 * RocksDB 7.8's iterators step over every key a range deletion hides, even
 * past the read's upper bound, so until then each seek near the dropped range
 * costs the size of what was dropped. Blocks until done; FERRY_EINVAL on a
 * READ store or an invalid customer. */
ferry_status ferry_store_compact_customer(ferry_store *s, ferry_cf cf, const char *customer,
                                          ferry_error *err);

/* A writer: backs the whole store up (every customer, as of one moment) into
 * dir, a new data directory that ferry_store_open opens as it is. dir must
 * not exist; its parent must. dir/db is a RocksDB checkpoint: the memtables
 * are flushed first, then the table files are hard-linked when dir is on the
 * same file system (copied otherwise), so it costs little time or space and
 * never stops appends for long. FERRY_EINVAL on a READ store or when dir
 * exists, FERRY_EIO when it cannot be written. */
ferry_status ferry_store_backup(ferry_store *s, const char *dir, ferry_error *err);

/* Counters of a writer's commit thread, since open (all 0 for a READ store). */
typedef struct ferry_store_stats {
  uint64_t appends;    /* append requests that succeeded */
  uint64_t events;     /* events appended */
  uint64_t duplicates; /* changes dropped as duplicates */
  uint64_t groups;     /* commit groups (one or more requests handled together) */
  uint64_t syncs;      /* synced writes: group commits that shared one WAL sync */
  uint64_t chunks;     /* unsynced writes of large groups, before their synced head write */
  uint64_t failures;   /* append requests that failed */
} ferry_store_stats;
void ferry_store_stats_get(ferry_store *s, ferry_store_stats *out);

/* ------------------------------------------------------------------ log --- */

/* One change to append: its id and its packed ferry.v1.Change. Borrowed.
 * id is 1..FERRY_STORE_ID_MAX bytes and must equal the Change's own id field
 * (the stored event is self-describing: `ferry log` shows that id, and
 * recovery finds a leftover's dedup entry through it); append rejects a
 * change whose pb does not parse or whose id differs with FERRY_EINVAL. */
#define FERRY_STORE_ID_MAX 1024
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
 * batch is durable (or failed). changes must stay valid until cb runs.
 * Returns FERRY_OK once queued (cb will run, also for an invalid batch, with
 * the detail in its ferry_error); otherwise cb never runs: FERRY_EINVAL for
 * a NULL store/cb or a read-only store or one that is closing, FERRY_ENOMEM.
 * cb must not call ferry_store_append or ferry_store_close (it would wait
 * for the thread it runs on); ferry_store_append_async is fine. */
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

/* Reads one value; FERRY_ENOTFOUND if absent. *val is malloc'd, caller frees
 * (it has a NUL after the vlen bytes, for convenience). */
ferry_status ferry_kv_get(ferry_store *s, ferry_cf cf, const char *customer, const void *key,
                          size_t klen, char **val, size_t *vlen, ferry_error *err);

/* A write batch across families, committed atomically. The log is written
 * only by ferry_store_append: a batch that touches the events or dedup
 * family, or the meta name "head" (the customer's commit record), fails at
 * commit with FERRY_EINVAL. create returns NULL for an invalid customer or
 * when out of memory; put/delete failures (out of memory) are remembered
 * and returned by commit. */
typedef struct ferry_wbatch ferry_wbatch;
ferry_wbatch *ferry_wbatch_create(ferry_store *s, const char *customer);
void ferry_wbatch_put(ferry_wbatch *b, ferry_cf cf, const void *key, size_t klen, const void *val,
                      size_t vlen);
void ferry_wbatch_delete(ferry_wbatch *b, ferry_cf cf, const void *key, size_t klen);
/* Deletes [lo, hi) (relative keys); hi NULL means to the end of the customer's range. */
void ferry_wbatch_delete_range(ferry_wbatch *b, ferry_cf cf, const void *lo, size_t lolen,
                               const void *hi, size_t hilen);
size_t ferry_wbatch_count(const ferry_wbatch *b);
/* The size of the batch's writes in bytes. */
size_t ferry_wbatch_bytes(const ferry_wbatch *b);

/*
 * An indexed batch: ferry_wbatch_get and ferry_wbatch_scan see its own
 * uncommitted writes over the store's data (read your writes while building
 * a batch). Only the index family is scanned, and only by prefix:
 * scan_prefix gives the length of the prefix a key of the index family is
 * scanned by, or 0 for a key only ever read by key. It does not support
 * delete_range (commit fails with FERRY_EINVAL). NULL for an invalid
 * customer or when out of memory.
 */
typedef size_t (*ferry_scan_prefix_fn)(const void *key, size_t klen);
ferry_wbatch *ferry_wbatch_create_indexed(ferry_store *s, const char *customer,
                                          ferry_scan_prefix_fn scan_prefix);
/* Makes indexed batch b read through indexed batch under (NULL: stop) after
 * its own writes and before the store: under is an earlier batch whose
 * commit is still running. under must not change and must outlive its use. */
void ferry_wbatch_read_through(ferry_wbatch *b, ferry_wbatch *under);
/*
 * A write filter, for a long run of indexed batches over families that are
 * empty for the customer when it is made (a first fold, a replay): it
 * remembers the keys and index scan prefixes those batches wrote, and a
 * read through a batch that uses it, of a key (or scan of a prefix) it has
 * never seen in one of those families, is answered "not found" without the
 * store. The caller guarantees the families were empty and that, while the
 * filter is in use, every write of the customer to them goes through a
 * batch that uses it. families: bit (1 << cf) per family; bytes: its size
 * (8 bits per key keeps false positives, which cost only the read, to a few
 * percent). NULL when out of memory.
 */
typedef struct ferry_wfilter ferry_wfilter;
ferry_wfilter *ferry_wfilter_create(size_t bytes, unsigned families);
void ferry_wfilter_destroy(ferry_wfilter *f);
/* Makes indexed batch b read with (and commit into) f; NULL: no filter. */
void ferry_wbatch_use_filter(ferry_wbatch *b, ferry_wfilter *f);
/* Waits for b's commit if one runs, then empties it for reuse: the same
 * customer and kind, no writes, no batch under it, no filter. */
void ferry_wbatch_reset(ferry_wbatch *b);
/* sync: wait for the WAL to reach the disk. */
ferry_status ferry_wbatch_commit(ferry_wbatch *b, bool sync, ferry_error *err);
/* Starts writing b (not synced) on a thread of its own and returns at once;
 * ferry_wbatch_commit_wait returns the outcome. b must not change meanwhile
 * (reads are fine). Writes started later are ordered after it only if they
 * start after the wait. */
ferry_status ferry_wbatch_commit_start(ferry_wbatch *b, ferry_error *err);
ferry_status ferry_wbatch_commit_wait(ferry_wbatch *b, ferry_error *err);

/* A writer thread for a caller that commits small batches often (the
 * applier, once per loop turn), where a thread per commit would cost more
 * than the write: batches handed to it are written in order, one at a time
 * (sync: and the WAL synced after it); ferry_wbatch_commit_wait returns each
 * one's outcome, ferry_wbatch_commit_done says without waiting whether it
 * is there. Destroy waits for the batches handed to it. */
typedef struct ferry_bwriter ferry_bwriter;
ferry_bwriter *ferry_bwriter_create(void);
ferry_status ferry_bwriter_commit_start(ferry_bwriter *w, ferry_wbatch *b, bool sync,
                                        ferry_error *err);
bool ferry_wbatch_commit_done(ferry_wbatch *b);
void ferry_bwriter_destroy(ferry_bwriter *w);
/* Waits for a commit still running, then frees b. NULL is fine. */
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

/* Reads one value as ferry_kv_get does, seeing the batch's writes first if
 * it is indexed (a plain batch reads the store only). */
ferry_status ferry_wbatch_get(ferry_wbatch *b, ferry_cf cf, const void *key, size_t klen,
                              char **val, size_t *vlen, ferry_error *err);
/* Calls fn(arg, rest, len) in key order for every key of the index family
 * that starts with prefix, with the rest of the key after it: the store's
 * keys, merged with the writes of an indexed batch (and of the batch it
 * reads through). For an indexed batch, prefix must be a whole scan prefix
 * (scan_prefix(prefix) == plen), else FERRY_EINVAL. fn may write to the
 * batch; the scan is over by then. fn's non-zero status stops the scan and is
 * returned. */
ferry_status ferry_wbatch_scan(ferry_wbatch *b, const void *prefix, size_t plen,
                               ferry_status (*fn)(void *arg, const char *rest, size_t len),
                               void *arg, ferry_error *err);

/* Big-endian u64 helpers for keys. */
void ferry_be64_put(uint8_t out[8], uint64_t v);
uint64_t ferry_be64_get(const uint8_t in[8]);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_STORE_H */
