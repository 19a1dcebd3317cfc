/*
 * The output of one decoder run (see part.h): an arena of packed changes, the
 * refs into it and the listed errors, each with a hard cap derived from the
 * size of the input.
 */
#include "ingest/part.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_ERRORS 1000
#define CHUNK_MIN ((size_t)4 << 10)
#define CHUNK_MAX ((size_t)4 << 20)
/* A packed change is at most about twice its input (the default id repeats
 * the key) plus a few bytes; the cap leaves room and still stops a runaway. */
#define OUT_SLACK ((size_t)16 << 20)

void ingest_part_init(ingest_part *p, const ferry_decode_opts *o, size_t in_len) {
  memset(p, 0, sizeof *p);
  size_t chunk = in_len < CHUNK_MAX / 2 ? in_len * 2 : CHUNK_MAX;
  if (chunk < CHUNK_MIN) chunk = CHUNK_MIN;
  size_t cap = in_len < (SIZE_MAX - OUT_SLACK) / 4 ? in_len * 4 + OUT_SLACK : SIZE_MAX;
  arena_init(&p->out, chunk, cap);
  p->customer = o ? o->customer : NULL;
  p->max_errors = o && o->max_errors ? o->max_errors : DEFAULT_MAX_ERRORS;
  p->skip_invalid = o ? o->skip_invalid : false;
}

void ingest_part_free(ingest_part *p) {
  arena_free(&p->out);
  free(p->refs);
  free(p->errs);
  p->refs = NULL;
  p->errs = NULL;
  p->nrefs = p->nerrs = 0;
}

/* Grows *arr (of elem-sized items) so that one more fits, up to max items. */
static ferry_status grow(void **arr, size_t *cap, size_t have, size_t elem, size_t max) {
  if (have < *cap) return FERRY_OK;
  if (have >= max) return FERRY_ETOOBIG;
  size_t ncap = *cap ? *cap * 2 : 256;
  if (ncap > max) ncap = max;
  void *n = realloc(*arr, ncap * elem);
  if (!n) return FERRY_ENOMEM;
  *arr = n;
  *cap = ncap;
  return FERRY_OK;
}

uint8_t *ingest_part_reserve(ingest_part *p, size_t n, ferry_status *st) {
  uint8_t *out = arena_alloc(&p->out, n, 1);
  if (!out) *st = p->out.over_cap ? FERRY_ETOOBIG : FERRY_ENOMEM;
  return out;
}

ferry_status ingest_part_accept(ingest_part *p, const uint8_t *pb, size_t len, const uint8_t *id,
                                size_t id_len) {
  /* every change takes at least a few input bytes, so this never binds
   * for valid input; it only makes the bound explicit */
  size_t max = p->out.cap / 8 + 1024;
  ferry_status st = grow((void **)&p->refs, &p->refs_cap, p->nrefs, sizeof *p->refs, max);
  if (st) return st;
  p->refs[p->nrefs++] = (ferry_change_ref){(const char *)id, id_len, pb, len};
  return FERRY_OK;
}

ferry_status ingest_part_reject(ingest_part *p, uint64_t line, const ingest_problems *pr,
                                const char *text, size_t text_len) {
  p->invalid++;
  if (p->nerrs >= p->max_errors) return FERRY_OK;
  ferry_status st = grow((void **)&p->errs, &p->errs_cap, p->nerrs, sizeof *p->errs, p->max_errors);
  if (st) return st;
  ferry_change_error *e = &p->errs[p->nerrs++];
  e->line = line;
  memcpy(e->field, pr->field, sizeof e->field);
  memcpy(e->reason, pr->reason, sizeof e->reason);
  e->text = text;
  e->text_len = text_len;
  return FERRY_OK;
}
