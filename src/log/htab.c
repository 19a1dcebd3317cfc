/*
 * Open addressing with linear probing, kept at most half full so probes stay
 * short. The table only grows (there is no delete); htab_clear resets it
 * between commit groups.
 */
#include "log/htab.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* Above this many slots, clearing frees the memory instead of zeroing it, so
 * one huge batch does not leave every later group zeroing megabytes. */
#define HTAB_KEEP_SLOTS 65536

uint64_t htab_hash(uint32_t tag, const void *key, size_t len) {
  return XXH3_64bits_withSeed(key, len, tag);
}

static htab_entry *probe(const htab *t, uint64_t hash, uint32_t tag, const void *key, size_t len) {
  size_t mask = t->cap - 1;
  for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
    htab_entry *e = &t->slots[i];
    if (!e->key) return e;
    if (e->hash == hash && e->tag == tag && e->len == len && memcmp(e->key, key, len) == 0)
      return e;
  }
}

static ferry_status grow(htab *t, size_t cap) {
  htab_entry *old = t->slots;
  size_t old_cap = t->cap;
  htab_entry *slots = calloc(cap, sizeof *slots);
  if (!slots) return FERRY_ENOMEM;
  t->slots = slots;
  t->cap = cap;
  for (size_t i = 0; i < old_cap; i++) {
    if (old[i].key) *probe(t, old[i].hash, old[i].tag, old[i].key, old[i].len) = old[i];
  }
  free(old);
  return FERRY_OK;
}

ferry_status htab_reserve(htab *t, size_t n) {
  size_t want = t->count + n;
  if (want > SIZE_MAX / 4 / sizeof(htab_entry)) return FERRY_ENOMEM;
  size_t cap = t->cap ? t->cap : 16;
  while (cap < 2 * want)
    cap *= 2;
  return cap == t->cap ? FERRY_OK : grow(t, cap);
}

htab_entry *htab_find(const htab *t, uint64_t hash, uint32_t tag, const void *key, size_t len) {
  if (!t->cap) return NULL;
  htab_entry *e = probe(t, hash, tag, key, len);
  return e->key ? e : NULL;
}

htab_entry *htab_add(htab *t, uint64_t hash, uint32_t tag, const void *key, size_t len, void *val,
                     bool *added) {
  *added = false;
  if (htab_reserve(t, 1) != FERRY_OK) return NULL;
  htab_entry *e = probe(t, hash, tag, key, len);
  if (e->key) return e;
  e->hash = hash;
  e->key = key;
  e->len = (uint32_t)len;
  e->tag = tag;
  e->val = val;
  t->count++;
  *added = true;
  return e;
}

void htab_clear(htab *t) {
  if (t->cap > HTAB_KEEP_SLOTS) {
    htab_free(t);
    return;
  }
  if (t->cap) memset(t->slots, 0, t->cap * sizeof *t->slots);
  t->count = 0;
}

void htab_free(htab *t) {
  free(t->slots);
  t->slots = NULL;
  t->cap = 0;
  t->count = 0;
}
