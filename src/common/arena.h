/*
 * A bump allocator for many small allocations that die together (a batch's
 * or a map's keys): blocks of 16 KiB or more, freed at once. Each malloc and
 * free it saves costs more than what it allocates for the fold's maps.
 */
#ifndef FERRY_COMMON_ARENA_H
#define FERRY_COMMON_ARENA_H

#include <stddef.h>

typedef struct arena {
  char *block; /* the block being filled; starts with a link to the one before */
  size_t used, size;
} arena;

#define ARENA_INIT {NULL, 0, 0}

/* n bytes aligned to align (a power of two up to 16), valid until arena_free;
 * NULL when out of memory. */
void *arena_alloc(arena *a, size_t n, size_t align);
/* Frees every block; the arena is empty and reusable. */
void arena_free(arena *a);

#endif
