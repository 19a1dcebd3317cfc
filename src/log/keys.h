/*
 * Store keys: every key in every column family starts with the customer
 * prefix, one length byte and then the customer id, so that one customer's
 * data is one contiguous key range that a bounded scan reads and a range
 * delete drops. The length byte keeps "a" and "ab" apart: no prefix of one
 * customer is a prefix of another's keys.
 *
 * The exclusive upper bound of a customer's range is the prefix with its last
 * byte incremented; a valid customer id ends in [A-Za-z0-9_.-], so the
 * increment never carries.
 */
#ifndef FERRY_LOG_KEYS_H
#define FERRY_LOG_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/ferry.h"

#define KEY_PREFIX_MAX (1 + FERRY_CUSTOMER_MAX)

/* A customer's prefix and the upper bound of its range, on the caller's stack. */
typedef struct key_prefix {
  size_t len;                 /* 1 + strlen(customer) */
  char b[KEY_PREFIX_MAX];     /* length byte, customer id */
  char upper[KEY_PREFIX_MAX]; /* b with the last byte incremented (same length) */
} key_prefix;

/* Fills p for customer; false if the id fails ferry_customer_valid(). */
bool key_prefix_make(key_prefix *p, const char *customer);

/*
 * Reads the prefix at the start of a stored key into p (and the customer id,
 * NUL-terminated, into name if not NULL). False if the key does not start
 * with a well-formed prefix.
 */
bool key_prefix_parse(key_prefix *p, const char *key, size_t klen,
                      char name[FERRY_CUSTOMER_MAX + 1]);

/* The name of a customer's head record in the meta family. */
#define KEY_META_HEAD "head"
#define KEY_META_HEAD_LEN 4

#endif /* FERRY_LOG_KEYS_H */
