/*
 * A string-keyed hash map that owns copies of its keys (XXH3, open
 * addressing, linear probing). Values are the caller's. Iteration is in
 * insertion order, which keeps derived output deterministic. Keys live in
 * blocks the map frees together (a fold's batch maps hold a key per write:
 * a malloc and a free each cost more than the map itself).
 */
#ifndef FERRY_COMMON_STRMAP_H
#define FERRY_COMMON_STRMAP_H

#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"

typedef struct strmap_entry {
  char *key;   /* owned by the map, NUL-terminated (may also hold NULs: len says) */
  size_t len;
  void *val;
  uint64_t hash;
} strmap_entry;

typedef struct strmap {
  strmap_entry *entries; /* insertion order */
  size_t count, cap;
  uint64_t *slots;       /* hash's top half | index+1 into entries; 0 empty */
  size_t nslots;
  arena keys;
} strmap;

void strmap_init(strmap *m);
/* Returns the entry for key, adding it (val NULL) if absent; NULL on OOM. */
strmap_entry *strmap_upsert(strmap *m, const void *key, size_t len, int *added);
strmap_entry *strmap_get(const strmap *m, const void *key, size_t len);
/* The same, with the key's strmap_hash computed once for several maps. */
uint64_t strmap_hash(const void *key, size_t len);
strmap_entry *strmap_get_hashed(const strmap *m, const void *key, size_t len, uint64_t hash);
/* Empties the map for reuse, keeping its arrays (a fold's next batch fills
 * it to about the same size); values are freed by free_val if not NULL. */
void strmap_clear(strmap *m, void (*free_val)(void *));
/* Frees keys; values are freed by free_val if not NULL. */
void strmap_free(strmap *m, void (*free_val)(void *));

#endif
