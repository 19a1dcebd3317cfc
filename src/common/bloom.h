/*
 * A blocked Bloom filter over 64-bit hashes: each item sets 6 bits inside
 * one 64-byte block (one cache line per add or test). It answers "never
 * added" exactly and "maybe added" with a few percent of false positives at
 * 8 bits per item; more items than it was sized for only raise that rate.
 * Hashes must be well mixed (XXH3).
 */
#ifndef FERRY_COMMON_BLOOM_H
#define FERRY_COMMON_BLOOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bloom {
  uint64_t *bits;
  size_t nblocks; /* of 8 words */
} bloom;

/* Sizes b to about bytes (rounded up to a whole block); false when out of memory. */
bool bloom_init(bloom *b, size_t bytes);
void bloom_add(bloom *b, uint64_t hash);
bool bloom_maybe(const bloom *b, uint64_t hash);
void bloom_free(bloom *b);

#endif
