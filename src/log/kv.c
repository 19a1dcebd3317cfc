/*
 * Generic per-customer access for the projector and the applier: point
 * reads and atomic write batches over any family, keys relative to the
 * customer prefix.
 *
 * Keys are handed to RocksDB as two slices (prefix, relative key), so no
 * put or delete allocates. A batch remembers the first problem it met
 * (out of memory, a write to the log's own records) and commit reports it,
 * because put and delete return nothing.
 *
 * Write batches go straight to RocksDB, concurrently with the committer:
 * RocksDB serialises writes itself, and these batches are not allowed to
 * touch what appends own (events, dedup, the head), so the two never
 * interleave on the same keys.
 */
#include <stdlib.h>
#include <string.h>

#include "log/store_impl.h"

/* Hands the caller a malloc'd, NUL-terminated copy of data. */
static ferry_status copy_out(const char *data, size_t len, char **val, size_t *vlen,
                             ferry_error *err) {
  if (!(*val = malloc(len + 1))) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  if (len) memcpy(*val, data, len);
  (*val)[len] = '\0';
  *vlen = len;
  return FERRY_OK;
}

/* Reads customer p's key from family cf: through the indexed batch wbi
 * (its writes, then the store) if given, else from the store. */
static ferry_status kv_read(ferry_store *s, ferry_cf cf, const key_prefix *p, const void *key,
                            size_t klen, rocksdb_writebatch_wi_t *wbi, char **val, size_t *vlen,
                            ferry_error *err) {
  char *k = NULL, *errmsg = NULL, *copy = NULL;
  const char *data = NULL;
  size_t n = 0, len = 0;
  rocksdb_pinnableslice_t *v = NULL;
  ferry_status st = FERRY_OK;

  *val = NULL;
  *vlen = 0;
  if (!(k = store_key_join(p, key, klen, &n)))
    return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  if (wbi) {
    data = copy = rocksdb_writebatch_wi_get_from_batch_and_db_cf(wbi, s->db, s->ro, s->cf[cf], k, n,
                                                                 &len, &errmsg);
  } else if ((v = rocksdb_get_pinned_cf(s->db, s->ro, s->cf[cf], k, n, &errmsg))) {
    data = rocksdb_pinnableslice_value(v, &len);
  }
  if ((st = rdb_check(errmsg, err, "cannot read from family %s", rdb_cf_names[cf]))) goto done;
  if (!data)
    st = ferry_error_set(err, FERRY_ENOTFOUND, "no such key in family %s", rdb_cf_names[cf]);
  else
    st = copy_out(data, len, val, vlen, err);
done:
  if (v) rocksdb_pinnableslice_destroy(v);
  if (copy) rocksdb_free(copy);
  free(k);
  return st;
}

ferry_status ferry_kv_get(ferry_store *s, ferry_cf cf, const char *customer, const void *key,
                          size_t klen, char **val, size_t *vlen, ferry_error *err) {
  key_prefix p;
  if (!s || (unsigned)cf >= FERRY_CF_COUNT || !val || !vlen || (!key && klen))
    return ferry_error_set(err, FERRY_EINVAL, "ferry_kv_get: invalid arguments");
  if (!key_prefix_make(&p, customer))
    return ferry_error_set(err, FERRY_EINVAL, "invalid customer id '%s'", customer ? customer : "");
  return kv_read(s, cf, &p, key, klen, NULL, val, vlen, err);
}

/* ------------------------------------------------------------ wbatch --- */

struct ferry_wbatch {
  ferry_store *s;
  key_prefix p;
  rocksdb_writebatch_t *wb;     /* a plain batch, or */
  rocksdb_writebatch_wi_t *wbi; /* an indexed one: reads see its writes */
  ferry_error err;              /* the first problem; reported by commit */
};

static ferry_wbatch *wbatch_new(ferry_store *s, const char *customer, bool indexed) {
  ferry_wbatch *b = NULL;
  if (!s || !(b = calloc(1, sizeof *b))) return NULL;
  b->s = s;
  if (!key_prefix_make(&b->p, customer)) goto fail;
  /* overwrite_keys: a read of the batch returns the latest write of a key. */
  if (indexed)
    b->wbi = rocksdb_writebatch_wi_create(0, 1);
  else
    b->wb = rocksdb_writebatch_create();
  if (b->wb || b->wbi) return b;
fail:
  free(b);
  return NULL;
}

ferry_wbatch *ferry_wbatch_create(ferry_store *s, const char *customer) {
  return wbatch_new(s, customer, false);
}

ferry_wbatch *ferry_wbatch_create_indexed(ferry_store *s, const char *customer) {
  return wbatch_new(s, customer, true);
}

/* Records the batch's first problem. */
static void fail(ferry_wbatch *b, const char *msg, const char *detail) {
  if (!b->err.code) ferry_error_set(&b->err, FERRY_EINVAL, "write batch: %s%s", msg, detail);
}

/* The log's records may only change through ferry_store_append. */
static bool refused(ferry_wbatch *b, ferry_cf cf, const void *key, size_t klen) {
  if ((unsigned)cf >= FERRY_CF_COUNT) {
    fail(b, "no such family", "");
    return true;
  }
  if (cf == FERRY_CF_EVENTS || cf == FERRY_CF_DEDUP) {
    fail(b, "the log is written only by appends: ", rdb_cf_names[cf]);
    return true;
  }
  if (cf == FERRY_CF_META && klen == KEY_META_HEAD_LEN && memcmp(key, KEY_META_HEAD, klen) == 0) {
    fail(b, "the log is written only by appends: ", "meta head");
    return true;
  }
  return b->err.code != FERRY_OK;
}

void ferry_wbatch_put(ferry_wbatch *b, ferry_cf cf, const void *key, size_t klen, const void *val,
                      size_t vlen) {
  if (refused(b, cf, key, klen)) return;
  const char *kp[2] = {b->p.b, key};
  size_t ks[2] = {b->p.len, klen};
  const char *vp[1] = {val};
  size_t vs[1] = {vlen};
  if (b->wbi)
    rocksdb_writebatch_wi_putv_cf(b->wbi, b->s->cf[cf], 2, kp, ks, 1, vp, vs);
  else
    rocksdb_writebatch_putv_cf(b->wb, b->s->cf[cf], 2, kp, ks, 1, vp, vs);
}

void ferry_wbatch_delete(ferry_wbatch *b, ferry_cf cf, const void *key, size_t klen) {
  if (refused(b, cf, key, klen)) return;
  const char *kp[2] = {b->p.b, key};
  size_t ks[2] = {b->p.len, klen};
  if (b->wbi)
    rocksdb_writebatch_wi_deletev_cf(b->wbi, b->s->cf[cf], 2, kp, ks);
  else
    rocksdb_writebatch_deletev_cf(b->wb, b->s->cf[cf], 2, kp, ks);
}

static int cmp_bytes(const void *a, size_t alen, const void *b, size_t blen) {
  int c = memcmp(a, b, alen < blen ? alen : blen);
  return c ? c : (alen > blen) - (alen < blen);
}

/* Would [lo, hi) of meta cover the head record? */
static bool range_has_head(const void *lo, size_t lolen, const void *hi, size_t hilen) {
  return (!lo || cmp_bytes(lo, lolen, KEY_META_HEAD, KEY_META_HEAD_LEN) <= 0) &&
         (!hi || cmp_bytes(hi, hilen, KEY_META_HEAD, KEY_META_HEAD_LEN) > 0);
}

void ferry_wbatch_delete_range(ferry_wbatch *b, ferry_cf cf, const void *lo, size_t lolen,
                               const void *hi, size_t hilen) {
  if (refused(b, cf, "", 0)) return;
  if (cf == FERRY_CF_META && range_has_head(lo, lolen, hi, hilen))
    return fail(b, "the range covers the meta head record", "");
  /* RocksDB's indexed batch cannot hold a range delete. */
  if (b->wbi) return fail(b, "an indexed batch cannot delete a range", "");
  /* No lower bound is the prefix itself; no upper bound is the next customer. */
  const char *lp[2] = {b->p.b, lo ? lo : ""};
  size_t ls[2] = {b->p.len, lo ? lolen : 0};
  const char *hp[2] = {hi ? b->p.b : b->p.upper, hi ? hi : ""};
  size_t hs[2] = {b->p.len, hi ? hilen : 0};
  rocksdb_writebatch_delete_rangev_cf(b->wb, b->s->cf[cf], 2, lp, ls, hp, hs);
}

size_t ferry_wbatch_count(const ferry_wbatch *b) {
  if (!b) return 0;
  return (size_t)(b->wbi ? rocksdb_writebatch_wi_count(b->wbi) : rocksdb_writebatch_count(b->wb));
}

ferry_status ferry_wbatch_commit(ferry_wbatch *b, bool sync, ferry_error *err) {
  char *errmsg = NULL;
  if (!b) return ferry_error_set(err, FERRY_EINVAL, "ferry_wbatch_commit: no batch");
  if (b->err.code) return ferry_error_set(err, b->err.code, "%s", b->err.msg);
  if (b->s->mode != FERRY_STORE_WRITE)
    return ferry_error_set(err, FERRY_EINVAL, "the store is open read-only");
  rocksdb_writeoptions_t *wo = sync ? b->s->wo_sync : b->s->wo_nosync;
  if (b->wbi)
    rocksdb_write_writebatch_wi(b->s->db, wo, b->wbi, &errmsg);
  else
    rocksdb_write(b->s->db, wo, b->wb, &errmsg);
  return rdb_check(errmsg, err, "cannot write batch for customer %.*s", (int)b->p.len - 1,
                   b->p.b + 1);
}

void ferry_wbatch_destroy(ferry_wbatch *b) {
  if (!b) return;
  if (b->wbi) rocksdb_writebatch_wi_destroy(b->wbi);
  if (b->wb) rocksdb_writebatch_destroy(b->wb);
  free(b);
}

ferry_status ferry_wbatch_get(ferry_wbatch *b, ferry_cf cf, const void *key, size_t klen,
                              char **val, size_t *vlen, ferry_error *err) {
  if (!b || (unsigned)cf >= FERRY_CF_COUNT || !val || !vlen || (!key && klen))
    return ferry_error_set(err, FERRY_EINVAL, "ferry_wbatch_get: invalid arguments");
  return kv_read(b->s, cf, &b->p, key, klen, b->wbi, val, vlen, err);
}

ferry_status ferry_wbatch_iter_open(ferry_wbatch *b, ferry_cf cf, const void *lo, size_t lolen,
                                    const void *hi, size_t hilen, ferry_kv_iter **out,
                                    ferry_error *err) {
  if (!b || !out || (unsigned)cf >= FERRY_CF_COUNT)
    return ferry_error_set(err, FERRY_EINVAL, "ferry_wbatch_iter_open: invalid arguments");
  return store_kv_iter_open(b->s, cf, &b->p, lo, lolen, hi, hilen, b->wbi, out, err);
}
