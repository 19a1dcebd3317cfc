/*
 * The chunked bump allocator (see arena.h).
 */
#include "common/arena.h"

#include <stdint.h>
#include <stdlib.h>

struct arena_chunk {
  arena_chunk *next;
  size_t size; /* usable bytes in data */
  size_t used;
  /* 16-byte aligned data follows the header */
  _Alignas(16) unsigned char data[];
};

void arena_init(arena *a, size_t chunk_size, size_t cap) {
  a->head = NULL;
  a->chunk_size = chunk_size;
  a->total = 0;
  a->cap = cap;
  a->over_cap = false;
}

static arena_chunk *chunk_new(arena *a, size_t need) {
  size_t chunk = a->chunk_size ? a->chunk_size : 16u << 10, cap = a->cap ? a->cap : SIZE_MAX;
  size_t size = need > chunk ? need : chunk;
  if (size > cap || a->total > cap - size) {
    /* a smaller chunk may still fit when the usual size does not */
    if (need > cap || a->total > cap - need) {
      a->over_cap = true;
      return NULL;
    }
    size = need;
  }
  arena_chunk *c = malloc(sizeof *c + size);
  if (!c) return NULL;
  c->size = size;
  c->used = 0;
  c->next = a->head;
  a->head = c;
  a->total += size;
  return c;
}

void *arena_alloc(arena *a, size_t n, size_t align) {
  arena_chunk *c = a->head;
  a->over_cap = false;
  if (c) {
    size_t at = (c->used + (align - 1)) & ~(align - 1);
    if (at <= c->size && n <= c->size - at) {
      c->used = at + n;
      return c->data + at;
    }
  }
  if (n > SIZE_MAX - 16) return NULL;
  /* a fresh chunk starts 16-byte aligned, so no padding is needed */
  c = chunk_new(a, n);
  if (!c) return NULL;
  c->used = n;
  return c->data;
}

static void free_chain(arena_chunk *c) {
  while (c) {
    arena_chunk *next = c->next;
    free(c);
    c = next;
  }
}

void arena_reset(arena *a) {
  arena_chunk *keep = a->head;
  if (!keep) return;
  free_chain(keep->next);
  keep->next = NULL;
  keep->used = 0;
  a->total = keep->size;
  a->over_cap = false;
}

void arena_free(arena *a) {
  free_chain(a->head);
  a->head = NULL;
  a->total = 0;
}
