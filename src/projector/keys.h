/*
 * Key layout of the projector's and applier's families, relative to the
 * customer prefix the store adds. Every variable-length component is
 * length-prefixed so that a prefix scan never matches a longer name.
 *
 *   mirror   enc16(table) rowkey                        -> MirrorRow
 *   index    'I' enc16(table) enc16(column) enc32(value-text) rowkey -> ""   (join index)
 *   index    'C' enc16(entity) enc32(entity key) rootkey -> ""   (root rows claiming a key)
 *   index    'R' enc16(entity) rootkey                  -> entity key it yields now
 *   index    'B' enc16(target entity) enc32(target key) enc16(entity) entity key -> ""
 *                                                          (who references whom)
 *   desired  enc16(entity) entity key                   -> DesiredEntity
 *   applied  enc16(entity) entity key                   -> AppliedEntity
 *   dirty    be16(rank) enc16(entity) entity key        -> ""
 *   meta     "projection"                               -> ProjectionState
 *
 * enc16(s) = big-endian u16 length, then the bytes; enc32 likewise with u32.
 */
#ifndef FERRY_PROJECTOR_KEYS_H
#define FERRY_PROJECTOR_KEYS_H

#include <stddef.h>
#include <stdint.h>

#define FERRY_META_PROJECTION "projection"

/* A growable key buffer; keys are small, so a fixed cap suffices:
 * the largest is 'C' + 2+128 + 4+1024(entity keys are capped) + 1024. */
#define FERRY_KEY_CAP 4096
typedef struct ferry_key {
  uint8_t b[FERRY_KEY_CAP];
  size_t len;
  int overflow;
} ferry_key;

void ferry_key_reset(ferry_key *k);
void ferry_key_byte(ferry_key *k, uint8_t c);
void ferry_key_raw(ferry_key *k, const void *p, size_t n);
void ferry_key_enc16(ferry_key *k, const char *s, size_t n);
void ferry_key_enc32(ferry_key *k, const char *s, size_t n);
void ferry_key_be16(ferry_key *k, uint16_t v);

/* Reads an enc16/enc32 component at *pos of key; returns 0 on success. */
int ferry_key_read16(const char *key, size_t klen, size_t *pos, const char **s, size_t *n);
int ferry_key_read32(const char *key, size_t klen, size_t *pos, const char **s, size_t *n);

/* Whole keys. */
void ferry_key_mirror(ferry_key *k, const char *table, const char *rowkey);
void ferry_key_entity(ferry_key *k, const char *entity, const char *ekey); /* desired, applied */
void ferry_key_dirty(ferry_key *k, unsigned rank, const char *entity, const char *ekey);
/* Parses a dirty key back; pointers into key. */
int ferry_key_dirty_parse(const char *key, size_t klen, unsigned *rank, const char **entity,
                          size_t *elen, const char **ekey, size_t *eklen);
/* Parses an entity key (desired/applied) back. */
int ferry_key_entity_parse(const char *key, size_t klen, const char **entity, size_t *elen,
                           const char **ekey, size_t *eklen);

#endif /* FERRY_PROJECTOR_KEYS_H */
