/*
 * A chunked bump allocator for the ingest decoders. A batch of a million
 * changes would otherwise cost a million mallocs for the packed output alone;
 * the arena hands out slices of large chunks instead and frees them all at
 * once. Every arena has a hard cap on the bytes it may hold, so a hostile
 * batch cannot make the decoder grow without bound.
 *
 * Slices never move: a pointer stays valid until the arena is reset or freed.
 */
#ifndef FERRY_INGEST_ARENA_H
#define FERRY_INGEST_ARENA_H

#include <stdbool.h>
#include <stddef.h>

typedef struct arena_chunk arena_chunk;

typedef struct ingest_arena {
  arena_chunk *head; /* the chunk being filled; older ones follow ->next */
  size_t chunk_size; /* the usual size of a new chunk */
  size_t total;      /* bytes held in all chunks */
  size_t cap;        /* total may not grow past this */
  bool over_cap;     /* the last failed allocation hit the cap (not OOM) */
} ingest_arena;

/* Sets up an empty arena; allocates nothing yet. */
void ingest_arena_init(ingest_arena *a, size_t chunk_size, size_t cap);

/* n bytes aligned to align (a power of two, at most 16). Returns NULL when out
 * of memory or when the cap would be exceeded (then a->over_cap is set). */
void *ingest_arena_alloc(ingest_arena *a, size_t n, size_t align);

/* Forgets every slice but keeps the newest chunk for reuse. */
void ingest_arena_reset(ingest_arena *a);

/* Frees every chunk; the arena may be initialised again. */
void ingest_arena_free(ingest_arena *a);

#endif /* FERRY_INGEST_ARENA_H */
