#include "common/bloom.h"

#include <stdlib.h>

enum { WORDS = 8, PROBES = 6 };

bool bloom_init(bloom *b, size_t bytes) {
  b->nblocks = bytes / (WORDS * 8) + 1;
  b->bits = calloc(b->nblocks * WORDS, sizeof *b->bits);
  return b->bits != NULL;
}

/* The block from the hash's top half (multiply-shift, no modulo); the bit
 * positions, 9 bits each, from a remix of the whole hash. */
static uint64_t *block(const bloom *b, uint64_t hash) {
  return b->bits + ((hash >> 32) * b->nblocks >> 32) * WORDS;
}

void bloom_add(bloom *b, uint64_t hash) {
  uint64_t *w = block(b, hash), x = hash * 0x9e3779b97f4a7c15u;
  for (int i = 0; i < PROBES; i++, x >>= 9) w[(x >> 6) & 7] |= 1ull << (x & 63);
}

bool bloom_maybe(const bloom *b, uint64_t hash) {
  const uint64_t *w = block(b, hash);
  uint64_t x = hash * 0x9e3779b97f4a7c15u;
  for (int i = 0; i < PROBES; i++, x >>= 9)
    if (!(w[(x >> 6) & 7] & (1ull << (x & 63)))) return false;
  return true;
}

void bloom_free(bloom *b) {
  free(b->bits);
  b->bits = NULL;
  b->nblocks = 0;
}
