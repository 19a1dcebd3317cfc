/*
 * A chunked bump allocator for many small allocations that die together. A
 * batch of a million changes would otherwise cost a million mallocs for the
 * ingest decoders' packed output alone, and a fold batch a malloc and a free
 * for every key it writes; the arena hands out slices of large chunks instead
 * and frees them all at once. An arena may have a hard cap on the bytes it
 * holds, so a hostile batch cannot make the decoder grow without bound.
 *
 * Slices never move: a pointer stays valid until the arena is reset or freed.
 * A zeroed arena is ready to use: 16 KiB chunks, no cap.
 */
#ifndef FERRY_COMMON_ARENA_H
#define FERRY_COMMON_ARENA_H

#include <stdbool.h>
#include <stddef.h>

typedef struct arena_chunk arena_chunk;

typedef struct arena {
  arena_chunk *head; /* the chunk being filled; older ones follow ->next */
  size_t chunk_size; /* the usual size of a new chunk */
  size_t total;      /* bytes held in all chunks */
  size_t cap;        /* total may not grow past this */
  bool over_cap;     /* the last failed allocation hit the cap (not OOM) */
} arena;

/* Sets up an empty arena (chunk_size 0: 16 KiB; cap 0: none); allocates nothing yet. */
void arena_init(arena *a, size_t chunk_size, size_t cap);

/* n bytes aligned to align (a power of two, at most 16). Returns NULL when out
 * of memory or when the cap would be exceeded (then a->over_cap is set). */
void *arena_alloc(arena *a, size_t n, size_t align);

/* Forgets every slice but keeps the newest chunk for reuse. */
void arena_reset(arena *a);

/* Frees every chunk; the arena may be initialised again. */
void arena_free(arena *a);

#endif /* FERRY_COMMON_ARENA_H */
