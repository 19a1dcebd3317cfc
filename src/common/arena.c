#include "common/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_MIN (16u << 10)
#define HEADER 16 /* the link, padded so the first allocation is 16-aligned */

void *arena_alloc(arena *a, size_t n, size_t align) {
  size_t at = (a->used + align - 1) & ~(align - 1);
  if (!a->block || at + n > a->size) {
    size_t size = HEADER + n > BLOCK_MIN ? HEADER + n : BLOCK_MIN;
    char *b = malloc(size);
    if (!b) return NULL;
    memcpy(b, &a->block, sizeof a->block);
    a->block = b;
    a->size = size;
    at = HEADER;
  }
  a->used = at + n;
  return a->block + at;
}

void arena_free(arena *a) {
  while (a->block) {
    char *prev;
    memcpy(&prev, a->block, sizeof prev);
    free(a->block);
    a->block = prev;
  }
  a->used = a->size = 0;
}
