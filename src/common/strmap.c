/*
 * String-keyed hash map with owned keys (see strmap.h).
 */
#include "common/strmap.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

void strmap_init(strmap *m) { memset(m, 0, sizeof *m); }

static int rehash(strmap *m, size_t nslots) {
  uint32_t *slots = calloc(nslots, sizeof *slots);
  if (!slots) return -1;
  for (size_t i = 0; i < m->count; i++) {
    size_t h = (size_t)m->entries[i].hash & (nslots - 1);
    while (slots[h]) h = (h + 1) & (nslots - 1);
    slots[h] = (uint32_t)(i + 1);
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
  for (; m->slots[h]; h = (h + 1) & (m->nslots - 1)) {
    strmap_entry *e = &m->entries[m->slots[h] - 1];
    if (e->hash == hash && e->len == len && memcmp(e->key, key, len) == 0) return e;
  }
  if (slot) *slot = h;
  return NULL;
}

strmap_entry *strmap_get(const strmap *m, const void *key, size_t len) {
  return m->nslots ? find(m, key, len, XXH3_64bits(key, len), NULL) : NULL;
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
  m->slots[slot] = (uint32_t)(++m->count);
  if (added) *added = 1;
  return e;
}

void strmap_free(strmap *m, void (*free_val)(void *)) {
  for (size_t i = 0; free_val && i < m->count; i++) free_val(m->entries[i].val);
  arena_free(&m->keys);
  free(m->entries);
  free(m->slots);
  strmap_init(m);
}
