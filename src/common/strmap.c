/*
 * String-keyed hash map with owned keys (see strmap.h).
 */
#include "common/strmap.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

void strmap_init(strmap *m) { memset(m, 0, sizeof *m); }

/* A slot holds the entry's index + 1 (0: empty) and the top half of its
 * hash, so a probe passing other keys mostly never touches their entries:
 * in a fold's batch maps of 100,000 keys each such touch is a cache miss. */
static uint64_t slot_of(size_t i, uint64_t hash) {
  return (hash & 0xffffffff00000000u) | (uint64_t)(i + 1);
}

static int rehash(strmap *m, size_t nslots) {
  uint64_t *slots = calloc(nslots, sizeof *slots);
  if (!slots) return -1;
  for (size_t i = 0; i < m->count; i++) {
    size_t h = (size_t)m->entries[i].hash & (nslots - 1);
    while (slots[h]) h = (h + 1) & (nslots - 1);
    slots[h] = slot_of(i, m->entries[i].hash);
  }
  free(m->slots);
  m->slots = slots;
  m->nslots = nslots;
  return 0;
}

static strmap_entry *find(const strmap *m, const void *key, size_t len, uint64_t hash,
                          size_t *slot) {
  if (!m->nslots) return NULL;
  size_t h = (size_t)hash & (m->nslots - 1);
  uint64_t tag = hash & 0xffffffff00000000u;
  for (uint64_t sl; (sl = m->slots[h]); h = (h + 1) & (m->nslots - 1)) {
    if ((sl & 0xffffffff00000000u) != tag) continue;
    strmap_entry *e = &m->entries[(uint32_t)sl - 1];
    if (e->hash == hash && e->len == len && memcmp(e->key, key, len) == 0) return e;
  }
  if (slot) *slot = h;
  return NULL;
}

uint64_t strmap_hash(const void *key, size_t len) { return XXH3_64bits(key, len); }

strmap_entry *strmap_get(const strmap *m, const void *key, size_t len) {
  return m->nslots ? find(m, key, len, XXH3_64bits(key, len), NULL) : NULL;
}

strmap_entry *strmap_get_hashed(const strmap *m, const void *key, size_t len, uint64_t hash) {
  return m->nslots ? find(m, key, len, hash, NULL) : NULL;
}

strmap_entry *strmap_upsert(strmap *m, const void *key, size_t len, int *added) {
  size_t slot = 0;
  uint64_t hash = XXH3_64bits(key, len);
  strmap_entry *e = find(m, key, len, hash, &slot);
  if (added) *added = 0;
  if (e) return e;
  if ((m->count + 1) * 2 > m->nslots) {
    if (rehash(m, m->nslots ? m->nslots * 2 : 64)) return NULL;
    find(m, key, len, hash, &slot);
  }
  if (m->count == m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 32;
    strmap_entry *n = realloc(m->entries, cap * sizeof *n);
    if (!n) return NULL;
    m->entries = n;
    m->cap = cap;
  }
  char *k = arena_alloc(&m->keys, len + 1, 1);
  if (!k) return NULL;
  memcpy(k, key, len);
  k[len] = '\0';
  e = &m->entries[m->count];
  e->key = k;
  e->len = len;
  e->val = NULL;
  e->hash = hash;
  m->slots[slot] = slot_of(m->count, hash);
  m->count++;
  if (added) *added = 1;
  return e;
}

void strmap_clear(strmap *m, void (*free_val)(void *)) {
  for (size_t i = 0; free_val && i < m->count; i++) free_val(m->entries[i].val);
  m->count = 0;
  if (m->slots) memset(m->slots, 0, m->nslots * sizeof *m->slots);
  arena_reset(&m->keys);
}

void strmap_free(strmap *m, void (*free_val)(void *)) {
  for (size_t i = 0; free_val && i < m->count; i++) free_val(m->entries[i].val);
  arena_free(&m->keys);
  free(m->entries);
  free(m->slots);
  strmap_init(m);
}
