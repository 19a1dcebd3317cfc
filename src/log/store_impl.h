/*
 * The store's insides, shared by the files of src/log/ and by nothing else:
 * the handle, the bounded iterator every scan uses, and the entry points
 * between open/close, recovery and the committer.
 */
#ifndef FERRY_LOG_STORE_IMPL_H
#define FERRY_LOG_STORE_IMPL_H

#include <rocksdb/c.h>
#include <stdbool.h>

#include "ferry/store.h"
#include "log/keys.h"
#include "log/rdb.h"

typedef struct committer committer;

struct ferry_store {
  char *dir;
  ferry_store_mode mode;
  int lock_fd;         /* WRITE: holds the pid lock; -1 otherwise */
  char *secondary_dir; /* READ: the secondary instance's private dir, removed on close */
  rdb_options opts;
  rocksdb_t *db;
  rocksdb_column_family_handle_t *cf_default; /* opened because RocksDB insists; unused */
  rocksdb_column_family_handle_t *cf[FERRY_CF_COUNT];
  rocksdb_readoptions_t *ro;
  rocksdb_writeoptions_t *wo_sync;
  rocksdb_writeoptions_t *wo_nosync;
  committer *com; /* WRITE only: owns every write to events, dedup and heads */
};

/*
 * A RocksDB iterator over [lo, hi) of one family (absolute keys; NULL: no
 * bound). RocksDB keeps pointers to the bounds, so the iterator owns copies.
 */
typedef struct rdb_iter {
  rocksdb_readoptions_t *ro;
  rocksdb_iterator_t *it;
  char *bounds; /* lo then hi */
} rdb_iter;

ferry_status rdb_iter_open(rdb_iter *it, ferry_store *s, ferry_cf cf, const void *lo, size_t lolen,
                           const void *hi, size_t hilen, ferry_error *err);
/* The iterator's error, if any, as a status (after it stops being valid). */
ferry_status rdb_iter_status(rdb_iter *it, ferry_error *err, const char *what);
void rdb_iter_close(rdb_iter *it);

/* Concatenates prefix and rel into a malloc'd key; NULL when out of memory. */
char *store_key_join(const key_prefix *p, const void *rel, size_t rel_len, size_t *len);

/* The committed head seq of a customer (0 if none). */
ferry_status store_read_head(ferry_store *s, const key_prefix *p, uint64_t *head, ferry_error *err);

/*
 * Calls fn for each customer with keys in family cf (in key order: by id
 * length, then bytes), seeking past each customer's range. fn may write.
 */
typedef ferry_status (*store_customer_fn)(void *arg, const key_prefix *p, const char *name,
                                          bool *stop, ferry_error *err);
ferry_status store_walk_customers(ferry_store *s, ferry_cf cf, store_customer_fn fn, void *arg,
                                  ferry_error *err);

/* Removes leftovers of uncommitted appends: for every customer (recover.c)... */
ferry_status store_recover_all(ferry_store *s, ferry_error *err);
/* ... or for one, whose committed head is head. */
ferry_status store_recover_customer(ferry_store *s, const key_prefix *p, uint64_t head,
                                    ferry_error *err);

/* The committer thread (committer.c). stop drains the queue first; accepts NULL. */
ferry_status committer_start(ferry_store *s, ferry_error *err);
void committer_stop(committer *c);
void committer_stats(committer *c, ferry_store_stats *out);

#endif /* FERRY_LOG_STORE_IMPL_H */
