/*
 * The RocksDB adapter: the one place that turns RocksDB's `char **errptr`
 * into a ferry_status, the column family names, and the tuned options the
 * store opens its database with.
 */
#ifndef FERRY_LOG_RDB_H
#define FERRY_LOG_RDB_H

#include <rocksdb/c.h>
#include <stdbool.h>

#include "ferry/store.h"

/* On-disk names of the families, indexed by ferry_cf. */
extern const char *const rdb_cf_names[FERRY_CF_COUNT];

/*
 * Takes an error string RocksDB returned through errptr (NULL: no error),
 * frees it, and returns the matching status with "WHAT: rocksdb message" in
 * *err. what is a printf format naming the operation.
 */
ferry_status rdb_check(char *errmsg, ferry_error *err, const char *what, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The options a store opens its database with; built and freed together. */
typedef struct rdb_options {
  rocksdb_options_t *db;
  rocksdb_options_t *cf[FERRY_CF_COUNT];
} rdb_options;

/*
 * Builds the options. For a secondary (read-only) instance the database
 * must not be created and every table file stays open, because the writer
 * may delete files the reader still reads. Returns FERRY_ENOMEM on failure.
 */
ferry_status rdb_options_build(rdb_options *o, bool secondary);
void rdb_options_free(rdb_options *o);

#endif /* FERRY_LOG_RDB_H */
