/*
 * The NDJSON fast path. jansson reads about 70 MB/s, too slow for a million
 * changes in a few seconds, and it builds a tree of allocations per line that
 * is thrown away at once. Most lines are plain: a flat object with the known
 * fields and a row of scalars. This scanner handles exactly those. It either
 * takes a line completely (checks it by the same rules and packs it) or
 * declines it, and then the jansson path decides, so every error message, and
 * every unusual but valid line, comes from jansson and the full checks. The
 * fast path never accepts what the jansson path would reject, nor packs a
 * change differently: the NDJSON fuzz target runs both on every input and
 * compares.
 */
#ifndef FERRY_INGEST_FASTJSON_H
#define FERRY_INGEST_FASTJSON_H

#include <stdbool.h>
#include <stddef.h>

#include "ingest/part.h"

/* Scratch memory for unescaped strings, reused line after line. */
typedef struct fastjson_buf {
  char *mem;
  size_t cap;
} fastjson_buf;

void fastjson_buf_free(fastjson_buf *b);

/* Returns true if it took the line: then *st is FERRY_OK, or FERRY_ENOMEM /
 * FERRY_ETOOBIG if packing it failed. False: use the jansson path. */
bool fastjson_line(ingest_part *p, fastjson_buf *buf, const char *line, size_t n, ferry_status *st);

#endif /* FERRY_INGEST_FASTJSON_H */
