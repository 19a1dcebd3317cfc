/*
 * RocksDB errors and options (see rdb.h).
 *
 * Tuning, for a write-heavy log on a small machine:
 * - events: big memtables (64 MiB) so a burst of ingest flushes rarely; no
 *   filter, since events are read by seq-ordered scans, not point lookups.
 * - dedup: full bloom filters in table files and a whole-key bloom in the
 *   memtable, because almost every lookup is a miss (a new change id) and a
 *   miss should cost a few bit tests, not a binary search per level.
 * - the projection families get filters too (point lookups by entity/row),
 *   the index family included: besides its prefix scans, a fold reads it by
 *   key (an entity's key by its root row, the marker saying a target was
 *   ever referred to), and those reads mostly miss. Without a filter each
 *   miss searched every level's table (at 1M entities the filter made the
 *   fold 10% faster and one change 15% cheaper).
 * - LZ4 everywhere: cheap enough to stay off the ingest critical path.
 * - one shared block cache and a global memtable budget, so nine families do
 *   not each claim their own.
 */
#include "log/rdb.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *const rdb_cf_names[FERRY_CF_COUNT] = {
    [FERRY_CF_EVENTS] = "events", [FERRY_CF_DEDUP] = "dedup",     [FERRY_CF_MIRROR] = "mirror",
    [FERRY_CF_INDEX] = "index",   [FERRY_CF_DESIRED] = "desired", [FERRY_CF_APPLIED] = "applied",
    [FERRY_CF_DIRTY] = "dirty",   [FERRY_CF_AUDIT] = "audit",     [FERRY_CF_META] = "meta",
};

#define MIB (1024u * 1024u)

/* RocksDB's Status::ToString() starts with the code's name. */
static ferry_status status_of(const char *msg) {
  static const struct {
    const char *prefix;
    ferry_status st;
  } map[] = {
      {"Corruption", FERRY_ECORRUPT},       {"Invalid argument", FERRY_EINVAL},
      {"NotFound", FERRY_ENOTFOUND},        {"Not found", FERRY_ENOTFOUND},
      {"Resource busy", FERRY_EBUSY},       {"Busy", FERRY_EBUSY},
      {"Not implemented", FERRY_EINTERNAL},
  };
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
    if (strncmp(msg, map[i].prefix, strlen(map[i].prefix)) == 0) return map[i].st;
  }
  return FERRY_EIO; /* IO error, Incomplete, Aborted, TimedOut, ShutdownInProgress ... */
}

ferry_status rdb_check(char *errmsg, ferry_error *err, const char *what, ...) {
  if (!errmsg) return FERRY_OK;
  char op[256];
  va_list ap;
  va_start(ap, what);
  vsnprintf(op, sizeof op, what, ap);
  va_end(ap);
  ferry_status st = status_of(errmsg);
  ferry_error_set(err, st, "%s: %s", op, errmsg);
  rocksdb_free(errmsg);
  return st;
}

static bool wants_filter(int cf) {
  return cf == FERRY_CF_DEDUP || cf == FERRY_CF_MIRROR || cf == FERRY_CF_DESIRED ||
         cf == FERRY_CF_APPLIED || cf == FERRY_CF_META || cf == FERRY_CF_INDEX;
}

static ferry_status cf_options(rocksdb_options_t *o, int cf, rocksdb_cache_t *cache) {
  rocksdb_block_based_table_options_t *t = rocksdb_block_based_options_create();
  if (!t) return FERRY_ENOMEM;
  rocksdb_block_based_options_set_block_cache(t, cache);
  rocksdb_block_based_options_set_format_version(t, 5);
  if (wants_filter(cf)) {
    /* Ownership of the policy passes to the table options. */
    rocksdb_block_based_options_set_filter_policy(t, rocksdb_filterpolicy_create_bloom_full(10));
    rocksdb_block_based_options_set_whole_key_filtering(t, 1);
  }
  rocksdb_options_set_block_based_table_factory(o, t);
  rocksdb_block_based_options_destroy(t);

  rocksdb_options_set_compression(o, rocksdb_lz4_compression);
  rocksdb_options_set_level_compaction_dynamic_level_bytes(o, 1);
  switch (cf) {
  case FERRY_CF_EVENTS:
    rocksdb_options_set_write_buffer_size(o, 64 * MIB);
    rocksdb_options_set_max_write_buffer_number(o, 3);
    break;
  case FERRY_CF_DEDUP:
    rocksdb_options_set_write_buffer_size(o, 32 * MIB);
    rocksdb_options_set_max_write_buffer_number(o, 3);
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(o, 0.05);
    rocksdb_options_set_memtable_whole_key_filtering(o, 1);
    break;
  case FERRY_CF_DIRTY:
    /* Dirty marks come and go (every applied call deletes one), and a plan
     * scans them: tombstones in a big memtable would make every scan skip
     * thousands of dead keys. A small memtable flushes them soon, and files
     * dense with deletions are compacted away. */
    rocksdb_options_set_write_buffer_size(o, 2 * MIB);
    rocksdb_options_set_level0_file_num_compaction_trigger(o, 2);
    rocksdb_options_add_compact_on_deletion_collector_factory(o, 1000, 200);
    break;
  default: rocksdb_options_set_write_buffer_size(o, 32 * MIB); break;
  }
  if (cf == FERRY_CF_MIRROR || cf == FERRY_CF_DESIRED || cf == FERRY_CF_APPLIED ||
      cf == FERRY_CF_INDEX) {
    /* A fold asks these for keys that mostly do not exist yet (a new row, a
     * new entity): a memtable bloom answers such a miss without a search. */
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(o, 0.02);
    rocksdb_options_set_memtable_whole_key_filtering(o, 1);
  }
  return FERRY_OK;
}

static void db_options(rocksdb_options_t *o, bool secondary) {
  rocksdb_options_set_create_if_missing(o, !secondary);
  rocksdb_options_set_create_missing_column_families(o, !secondary);
  rocksdb_options_set_max_background_jobs(o, 2);
  rocksdb_options_set_bytes_per_sync(o, 1 * MIB);
  /* all memtables together: memory stays bounded however many customers
   * and families are busy (the peak-RSS budget is 256 MiB at 1M entities) */
  rocksdb_options_set_db_write_buffer_size(o, 96 * MIB);
  /* Quiet families (meta, audit) would otherwise pin old WAL files. */
  rocksdb_options_set_max_total_wal_size(o, 512 * MIB);
  rocksdb_options_set_keep_log_file_num(o, 4);
  rocksdb_options_set_max_log_file_size(o, 16 * MIB);
  if (secondary) rocksdb_options_set_max_open_files(o, -1);
}

ferry_status rdb_options_build(rdb_options *o, bool secondary) {
  ferry_status st = FERRY_OK;
  rocksdb_cache_t *cache = NULL;
  memset(o, 0, sizeof *o);
  o->db = rocksdb_options_create();
  cache = rocksdb_cache_create_lru(32 * MIB);
  if (!o->db || !cache) {
    st = FERRY_ENOMEM;
    goto done;
  }
  db_options(o->db, secondary);
  for (int i = 0; i < FERRY_CF_COUNT; i++) {
    /* Each family starts from the database options, so shared settings apply. */
    o->cf[i] = rocksdb_options_create_copy(o->db);
    if (!o->cf[i]) {
      st = FERRY_ENOMEM;
      goto done;
    }
    if ((st = cf_options(o->cf[i], i, cache))) goto done;
  }
  /* The default family is never used, but RocksDB always opens it. */
  if ((st = cf_options(o->db, FERRY_CF_META, cache))) goto done;
done:
  if (cache) rocksdb_cache_destroy(cache); /* the table options hold their own reference */
  if (st) rdb_options_free(o);
  return st;
}

void rdb_options_free(rdb_options *o) {
  for (int i = 0; i < FERRY_CF_COUNT; i++) {
    if (o->cf[i]) rocksdb_options_destroy(o->cf[i]);
    o->cf[i] = NULL;
  }
  if (o->db) rocksdb_options_destroy(o->db);
  o->db = NULL;
}
