/*
 * Scans: the bounded RocksDB iterator every scan is built on, a customer's
 * log, a customer's range of any family, and the list of customers.
 *
 * Every scan sets RocksDB's lower and upper bounds to the customer's range
 * (narrowed by the caller's lo/hi), so it can never step into a neighbour's
 * keys and RocksDB can skip table files outside the range.
 */
#include <stdlib.h>
#include <string.h>

#include "log/store_impl.h"

ferry_status rdb_iter_open(rdb_iter *it, ferry_store *s, ferry_cf cf, const void *lo, size_t lolen,
                           const void *hi, size_t hilen, ferry_error *err) {
  memset(it, 0, sizeof *it);
  it->bounds = malloc(lolen + hilen + 1);
  it->ro = rocksdb_readoptions_create();
  if (!it->bounds || !it->ro) {
    rdb_iter_close(it);
    return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  }
  if (lo) {
    memcpy(it->bounds, lo, lolen);
    rocksdb_readoptions_set_iterate_lower_bound(it->ro, it->bounds, lolen);
  }
  if (hi) {
    memcpy(it->bounds + lolen, hi, hilen);
    rocksdb_readoptions_set_iterate_upper_bound(it->ro, it->bounds + lolen, hilen);
  }
  it->it = rocksdb_create_iterator_cf(s->db, it->ro, s->cf[cf]);
  if (!it->it) {
    rdb_iter_close(it);
    return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  }
  if (lo)
    rocksdb_iter_seek(it->it, it->bounds, lolen);
  else
    rocksdb_iter_seek_to_first(it->it);
  return FERRY_OK;
}

ferry_status rdb_iter_status(rdb_iter *it, ferry_error *err, const char *what) {
  char *errmsg = NULL;
  rocksdb_iter_get_error(it->it, &errmsg);
  return rdb_check(errmsg, err, "%s", what);
}

void rdb_iter_close(rdb_iter *it) {
  if (it->it) rocksdb_iter_destroy(it->it); /* before the options and bounds it points at */
  if (it->ro) rocksdb_readoptions_destroy(it->ro);
  free(it->bounds);
  memset(it, 0, sizeof *it);
}

/* A forward scan of one customer's keys: the log's and the kv iterators. */
typedef struct cursor {
  rdb_iter r;
  size_t prefix_len;
  bool started;
  bool ended; /* RocksDB must not be stepped past the end */
  ferry_error err;
} cursor;

/* Steps to the next key: 1 with its key (whole) in *k, 0 at the end, -1 on error. */
static int cursor_step(cursor *c, const char *what, const char **k, size_t *klen) {
  if (c->err.code) return -1;
  if (c->ended) return 0;
  if (c->started) rocksdb_iter_next(c->r.it);
  c->started = true;
  if (!rocksdb_iter_valid(c->r.it)) {
    c->ended = true;
    return rdb_iter_status(&c->r, &c->err, what) ? -1 : 0;
  }
  *k = rocksdb_iter_key(c->r.it, klen);
  return 1;
}

static ferry_status cursor_error(const cursor *c, ferry_error *err) {
  if (err) *err = c->err;
  return c->err.code;
}

/* ---------------------------------------------------------------- log --- */

struct ferry_log_iter {
  cursor c;
};

ferry_status ferry_log_iter_open(ferry_store *s, const char *customer, uint64_t from_seq,
                                 ferry_log_iter **out, ferry_error *err) {
  ferry_status st = FERRY_OK;
  key_prefix p;
  uint64_t head = 0;
  char lo[KEY_PREFIX_MAX + 8], hi[KEY_PREFIX_MAX + 8];
  ferry_log_iter *it = NULL;

  if (!s || !out)
    return ferry_error_set(err, FERRY_EINVAL, "ferry_log_iter_open: invalid arguments");
  *out = NULL;
  if (!key_prefix_make(&p, customer))
    return ferry_error_set(err, FERRY_EINVAL, "invalid customer id '%s'", customer ? customer : "");
  /* Events above the head belong to an append that has not committed. */
  if ((st = store_read_head(s, &p, &head, err))) goto done;
  if (from_seq == 0) from_seq = 1;
  if (from_seq > head) from_seq = head + 1; /* an empty range */
  memcpy(lo, p.b, p.len);
  ferry_be64_put((uint8_t *)lo + p.len, from_seq);
  memcpy(hi, p.b, p.len);
  ferry_be64_put((uint8_t *)hi + p.len, head + 1);
  if (!(it = calloc(1, sizeof *it))) {
    st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
    goto done;
  }
  it->c.prefix_len = p.len;
  if ((st = rdb_iter_open(&it->c.r, s, FERRY_CF_EVENTS, lo, p.len + 8, hi, p.len + 8, err)))
    goto done;
  *out = it;
  it = NULL;
done:
  ferry_log_iter_close(it);
  return st;
}

int ferry_log_iter_next(ferry_log_iter *it, uint64_t *seq, const uint8_t **event, size_t *len) {
  const char *k;
  size_t klen;
  int r = cursor_step(&it->c, "cannot read the log", &k, &klen);
  if (r != 1) return r;
  if (klen != it->c.prefix_len + 8) {
    ferry_error_set(&it->c.err, FERRY_ECORRUPT, "event key of %zu bytes in the log", klen);
    return -1;
  }
  *seq = ferry_be64_get((const uint8_t *)k + it->c.prefix_len);
  *event = (const uint8_t *)rocksdb_iter_value(it->c.r.it, len);
  return 1;
}

ferry_status ferry_log_iter_error(ferry_log_iter *it, ferry_error *err) {
  return it ? cursor_error(&it->c, err) : FERRY_OK;
}

void ferry_log_iter_close(ferry_log_iter *it) {
  if (!it) return;
  rdb_iter_close(&it->c.r);
  free(it);
}

/* ----------------------------------------------------------------- kv --- */

struct ferry_kv_iter {
  cursor c;
};

ferry_status ferry_kv_iter_open(ferry_store *s, ferry_cf cf, const char *customer, const void *lo,
                                size_t lolen, const void *hi, size_t hilen, ferry_kv_iter **out,
                                ferry_error *err) {
  key_prefix p;
  ferry_status st = FERRY_OK;
  char *alo = NULL, *ahi = NULL;
  size_t alolen = 0, ahilen = 0;
  ferry_kv_iter *it = NULL;

  if (!s || !out || (unsigned)cf >= FERRY_CF_COUNT)
    return ferry_error_set(err, FERRY_EINVAL, "ferry_kv_iter_open: invalid arguments");
  *out = NULL;
  if (!key_prefix_make(&p, customer))
    return ferry_error_set(err, FERRY_EINVAL, "invalid customer id '%s'", customer ? customer : "");
  alo = store_key_join(&p, lo, lo ? lolen : 0, &alolen);
  if (hi)
    ahi = store_key_join(&p, hi, hilen, &ahilen);
  else if ((ahi = malloc(p.len))) {
    memcpy(ahi, p.upper, p.len);
    ahilen = p.len;
  }
  it = calloc(1, sizeof *it);
  if (!alo || !ahi || !it) {
    st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
    goto done;
  }
  it->c.prefix_len = p.len;
  if ((st = rdb_iter_open(&it->c.r, s, cf, alo, alolen, ahi, ahilen, err))) goto done;
  *out = it;
  it = NULL;
done:
  ferry_kv_iter_close(it);
  free(ahi);
  free(alo);
  return st;
}

int ferry_kv_iter_next(ferry_kv_iter *it, const char **key, size_t *klen, const char **val,
                       size_t *vlen) {
  const char *k;
  size_t n;
  int r = cursor_step(&it->c, "cannot scan", &k, &n);
  if (r != 1) return r;
  *key = k + it->c.prefix_len; /* the bounds guarantee the prefix */
  *klen = n - it->c.prefix_len;
  *val = rocksdb_iter_value(it->c.r.it, vlen);
  return 1;
}

ferry_status ferry_kv_iter_error(ferry_kv_iter *it, ferry_error *err) {
  return it ? cursor_error(&it->c, err) : FERRY_OK;
}

void ferry_kv_iter_close(ferry_kv_iter *it) {
  if (!it) return;
  rdb_iter_close(&it->c.r);
  free(it);
}
