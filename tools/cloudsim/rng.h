/* ferry-cloudsim's one random number generator, splitmix64: tiny, fast, seedable, and plenty for
 * fault draws and uuids. Not for anything secret. */
#ifndef CLOUDSIM_RNG_H
#define CLOUDSIM_RNG_H

#include <stdint.h>

/* Advances *state and returns the next 64 random bits. */
static inline uint64_t cs_rng_next(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

#endif
