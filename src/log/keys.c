/*
 * Customer key prefixes (see keys.h) and the big-endian u64 helpers that
 * make seqs sort numerically as RocksDB keys.
 */
#include "log/keys.h"

#include <string.h>

#include "ferry/store.h"

bool key_prefix_make(key_prefix *p, const char *customer) {
  if (!ferry_customer_valid(customer)) return false;
  size_t n = strlen(customer);
  p->len = 1 + n;
  p->b[0] = (char)n;
  memcpy(p->b + 1, customer, n);
  memcpy(p->upper, p->b, p->len);
  p->upper[p->len - 1]++;
  return true;
}

bool key_prefix_parse(key_prefix *p, const char *key, size_t klen,
                      char name[FERRY_CUSTOMER_MAX + 1]) {
  char tmp[FERRY_CUSTOMER_MAX + 1];
  if (klen < 1) return false;
  size_t n = (uint8_t)key[0];
  if (n == 0 || n > FERRY_CUSTOMER_MAX || klen < 1 + n) return false;
  memcpy(tmp, key + 1, n);
  tmp[n] = '\0';
  if (!key_prefix_make(p, tmp)) return false;
  if (name) memcpy(name, tmp, n + 1);
  return true;
}

void ferry_be64_put(uint8_t out[8], uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    out[i] = (uint8_t)v;
    v >>= 8;
  }
}

uint64_t ferry_be64_get(const uint8_t in[8]) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | in[i];
  return v;
}
