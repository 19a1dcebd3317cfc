/*
 * Key encoding for the projector and applier families (see keys.h).
 */
#include "projector/keys.h"

#include <string.h>

void ferry_key_reset(ferry_key *k) {
  k->len = 0;
  k->overflow = 0;
}

void ferry_key_raw(ferry_key *k, const void *p, size_t n) {
  if (k->len + n > FERRY_KEY_CAP) {
    k->overflow = 1;
    return;
  }
  memcpy(k->b + k->len, p, n);
  k->len += n;
}

void ferry_key_byte(ferry_key *k, uint8_t c) { ferry_key_raw(k, &c, 1); }

void ferry_key_be16(ferry_key *k, uint16_t v) {
  uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
  ferry_key_raw(k, b, 2);
}

void ferry_key_enc16(ferry_key *k, const char *s, size_t n) {
  if (n > 0xffff) { k->overflow = 1; return; }
  ferry_key_be16(k, (uint16_t)n);
  ferry_key_raw(k, s, n);
}

void ferry_key_enc32(ferry_key *k, const char *s, size_t n) {
  uint8_t b[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
  ferry_key_raw(k, b, 4);
  ferry_key_raw(k, s, n);
}

static int read_len(const char *key, size_t klen, size_t *pos, size_t width, const char **s,
                    size_t *n) {
  if (*pos + width > klen) return -1;
  size_t len = 0;
  for (size_t i = 0; i < width; i++) len = (len << 8) | (uint8_t)key[*pos + i];
  if (*pos + width + len > klen) return -1;
  *s = key + *pos + width;
  *n = len;
  *pos += width + len;
  return 0;
}

int ferry_key_read16(const char *key, size_t klen, size_t *pos, const char **s, size_t *n) {
  return read_len(key, klen, pos, 2, s, n);
}

int ferry_key_read32(const char *key, size_t klen, size_t *pos, const char **s, size_t *n) {
  return read_len(key, klen, pos, 4, s, n);
}

void ferry_key_mirror(ferry_key *k, const char *table, const char *rowkey) {
  ferry_key_reset(k);
  ferry_key_enc16(k, table, strlen(table));
  ferry_key_raw(k, rowkey, strlen(rowkey));
}

void ferry_key_entity(ferry_key *k, const char *entity, const char *ekey) {
  ferry_key_reset(k);
  ferry_key_enc16(k, entity, strlen(entity));
  ferry_key_raw(k, ekey, strlen(ekey));
}

void ferry_key_dirty(ferry_key *k, unsigned rank, const char *entity, const char *ekey) {
  ferry_key_reset(k);
  ferry_key_be16(k, (uint16_t)rank);
  ferry_key_enc16(k, entity, strlen(entity));
  ferry_key_raw(k, ekey, strlen(ekey));
}

int ferry_key_entity_parse(const char *key, size_t klen, const char **entity, size_t *elen,
                           const char **ekey, size_t *eklen) {
  size_t pos = 0;
  if (ferry_key_read16(key, klen, &pos, entity, elen)) return -1;
  *ekey = key + pos;
  *eklen = klen - pos;
  return 0;
}

int ferry_key_dirty_parse(const char *key, size_t klen, unsigned *rank, const char **entity,
                          size_t *elen, const char **ekey, size_t *eklen) {
  if (klen < 2) return -1;
  *rank = ((unsigned)(uint8_t)key[0] << 8) | (uint8_t)key[1];
  return ferry_key_entity_parse(key + 2, klen - 2, entity, elen, ekey, eklen);
}
