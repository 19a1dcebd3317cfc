/*
 * A small open-addressing hash table of borrowed byte strings, hashed with
 * xxHash (XXH3). The committer uses one for its customer head cache and one
 * per commit group for the change ids seen so far, so a duplicate inside a
 * batch (or inside the group) is found without touching RocksDB.
 *
 * Keys are borrowed: the table stores the pointer, never a copy, so a key
 * must outlive its entry. A tag (a small number) partitions the key space:
 * the id set tags each id with its customer's number.
 */
#ifndef FERRY_LOG_HTAB_H
#define FERRY_LOG_HTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/ferry.h"

typedef struct htab_entry {
  uint64_t hash;
  const void *key; /* NULL: empty slot */
  uint32_t len;
  uint32_t tag;
  void *val;
} htab_entry;

typedef struct htab {
  htab_entry *slots;
  size_t cap; /* 0 or a power of two */
  size_t count;
} htab;

uint64_t htab_hash(uint32_t tag, const void *key, size_t len);

/* Makes room for n more entries without growing again; FERRY_ENOMEM on failure. */
ferry_status htab_reserve(htab *t, size_t n);

/* The entry for (tag, key), or NULL. */
htab_entry *htab_find(const htab *t, uint64_t hash, uint32_t tag, const void *key, size_t len);

/*
 * Adds (tag, key) -> val unless present. Returns the entry (new or existing)
 * and sets *added; NULL only when growing failed (out of memory).
 */
htab_entry *htab_add(htab *t, uint64_t hash, uint32_t tag, const void *key, size_t len, void *val,
                     bool *added);

/* Empties the table, keeping its memory unless it grew large. */
void htab_clear(htab *t);
void htab_free(htab *t);

#endif /* FERRY_LOG_HTAB_H */
