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

#include <pthread.h>

#include "common/bloom.h"
#include "common/strmap.h"
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

static ferry_status not_found(ferry_error *err, ferry_cf cf) {
  return ferry_error_set(err, FERRY_ENOTFOUND, "no such key in family %s", rdb_cf_names[cf]);
}

/* Reads customer p's key from family cf of the store. */
static ferry_status kv_read(ferry_store *s, ferry_cf cf, const key_prefix *p, const void *key,
                            size_t klen, char **val, size_t *vlen, ferry_error *err) {
  char *k = NULL, *errmsg = NULL;
  const char *data = NULL;
  size_t n = 0, len = 0;
  rocksdb_pinnableslice_t *v = NULL;
  ferry_status st = FERRY_OK;

  *val = NULL;
  *vlen = 0;
  if (!(k = store_key_join(p, key, klen, &n)))
    return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  if ((v = rocksdb_get_pinned_cf(s->db, s->ro, s->cf[cf], k, n, &errmsg)))
    data = rocksdb_pinnableslice_value(v, &len);
  if ((st = rdb_check(errmsg, err, "cannot read from family %s", rdb_cf_names[cf]))) goto done;
  if (!data)
    st = not_found(err, cf);
  else
    st = copy_out(data, len, val, vlen, err);
done:
  if (v) rocksdb_pinnableslice_destroy(v);
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
  return kv_read(s, cf, &p, key, klen, val, vlen, err);
}

/* ------------------------------------------------------------ wbatch --- */

/*
 * DESIGN
 * Every batch collects its writes in a plain RocksDB WriteBatch, which is
 * what commit writes. An indexed batch also keeps them readable: point reads
 * look in a hash map (family byte + key -> latest value or tombstone). The
 * index family, the only one scanned through a batch, is scanned by prefix
 * only, and the caller says which prefix each of its keys is scanned by
 * (ferry_scan_prefix_fn): its writes are also filed in a second hash map,
 * prefix -> the writes under it in order. A scan seeks an iterator over the
 * store and merges the few writes filed under its prefix. (RocksDB's indexed
 * batch did this before: a skiplist insert per write of the family and, per
 * scan, a merging iterator over it: the fold's rate rose from 45k to 53k
 * events/s at 100k entities without it.)
 * A batch may read through an older batch that is still being committed
 * ("under"): its reads see its own writes, then the older batch's, then the
 * store. This lets a fold build batch N+1 while batch N is written on
 * another thread.
 */

/* Where the latest write of a key keeps its value: the value is the tail of
 * the put's record in the WriteBatch, so the map stores no copy. */
typedef struct ov_val {
  size_t off, len;
  bool deleted;
} ov_val;

/* The writes of the index family under one scan prefix, in order: the rest
 * of each key after the prefix, and whether it was a delete. */
typedef struct scan_write {
  char *rest;
  size_t len;
  bool deleted;
} scan_write;
typedef struct scan_group {
  scan_write *v;
  size_t n, cap;
} scan_group;

struct ferry_wbatch {
  ferry_store *s;
  key_prefix p;
  rocksdb_writebatch_t *wb;       /* every write: what commit writes */
  rocksdb_writebatch_t *sorted;   /* indexed: what commit writes instead (kept for reuse) */
  bool indexed;
  strmap point;                   /* indexed: family byte + key -> ov_val* into wb */
  arena mem;                       /* indexed: point's ov_vals, the scan writes' rests */
  ferry_scan_prefix_fn scan_prefix; /* indexed: the prefix an index key is scanned by */
  strmap groups;                  /* indexed: scan prefix -> scan_group* */
  ferry_wbatch *under;            /* being committed: read after this batch */
  ferry_wfilter *filter;          /* indexed: what batches wrote before this one */
  pthread_t thread;               /* commit_start's writer */
  ferry_bwriter *via;             /* or the writer thread it was handed to */
  ferry_wbatch *qnext;            /* in via's queue */
  bool via_sync;                  /* via writes it with a WAL sync */
  bool committing;
  ferry_status commit_st;
  ferry_error commit_err;
  ferry_error err;                /* the first problem; reported by commit */
};

/*
 * A fold that starts from an empty projection reads mostly keys that do not
 * exist yet (a new row, a new entity, the phones of a new contact): each
 * such read went through every memtable and level of the store, and each
 * collect scan opened an iterator, to find nothing. The filter remembers
 * every key (and index scan prefix) that a batch using it handed to the
 * store; a read of a key it has never seen, in a family that was empty
 * when it was made, does not go to the store. A batch's keys enter the
 * filter when its commit starts, before any of them can be in the store;
 * the batch's own writes, and those of the batch it reads through, are in
 * their overlays. A false positive only costs the read it would have made.
 */
struct ferry_wfilter {
  bloom keys;
  unsigned families; /* bit cf: the family was empty for the customer */
};

ferry_wfilter *ferry_wfilter_create(size_t bytes, unsigned families) {
  ferry_wfilter *f = calloc(1, sizeof *f);
  if (!f || !bloom_init(&f->keys, bytes)) {
    free(f);
    return NULL;
  }
  f->families = families;
  return f;
}

void ferry_wfilter_destroy(ferry_wfilter *f) {
  if (!f) return;
  bloom_free(&f->keys);
  free(f);
}

static bool filtered(const ferry_wfilter *f, ferry_cf cf) {
  return f && (f->families & (1u << cf));
}

/* Enters b's keys (point keys are family byte + key, hashed as the point
 * map hashed them) and index scan prefixes into its filter. */
static void filter_admit(ferry_wbatch *b) {
  ferry_wfilter *f = b->filter;
  if (!f) return;
  for (size_t i = 0; i < b->point.count; i++) {
    const strmap_entry *e = &b->point.entries[i];
    if (filtered(f, (ferry_cf)(uint8_t)e->key[0])) bloom_add(&f->keys, e->hash);
  }
  if (filtered(f, FERRY_CF_INDEX))
    for (size_t i = 0; i < b->groups.count; i++) bloom_add(&f->keys, b->groups.entries[i].hash);
}

void ferry_wbatch_use_filter(ferry_wbatch *b, ferry_wfilter *f) {
  if (b && b->indexed) b->filter = f;
}

static ferry_wbatch *wbatch_new(ferry_store *s, const char *customer, ferry_scan_prefix_fn sp,
                                bool indexed) {
  ferry_wbatch *b = NULL;
  if (!s || !(b = calloc(1, sizeof *b))) return NULL;
  b->s = s;
  b->indexed = indexed;
  b->scan_prefix = sp;
  strmap_init(&b->point);
  strmap_init(&b->groups);
  if (!key_prefix_make(&b->p, customer)) goto fail;
  if (!(b->wb = rocksdb_writebatch_create())) goto fail;
  return b;
fail:
  ferry_wbatch_destroy(b);
  return NULL;
}

ferry_wbatch *ferry_wbatch_create(ferry_store *s, const char *customer) {
  return wbatch_new(s, customer, NULL, false);
}

ferry_wbatch *ferry_wbatch_create_indexed(ferry_store *s, const char *customer,
                                          ferry_scan_prefix_fn scan_prefix) {
  return wbatch_new(s, customer, scan_prefix, true);
}

void ferry_wbatch_read_through(ferry_wbatch *b, ferry_wbatch *under) {
  if (b && b->indexed && (!under || under->indexed)) b->under = under;
}

/* Records the batch's first problem. */
static void fail(ferry_wbatch *b, ferry_status code, const char *msg, const char *detail) {
  if (!b->err.code) ferry_error_set(&b->err, code, "write batch: %s%s", msg, detail);
}

/* The log's records may only change through ferry_store_append. */
static bool refused(ferry_wbatch *b, ferry_cf cf, const void *key, size_t klen) {
  if ((unsigned)cf >= FERRY_CF_COUNT) {
    fail(b, FERRY_EINVAL, "no such family", "");
    return true;
  }
  if (cf == FERRY_CF_EVENTS || cf == FERRY_CF_DEDUP) {
    fail(b, FERRY_EINVAL, "the log is written only by appends: ", rdb_cf_names[cf]);
    return true;
  }
  if (cf == FERRY_CF_META && klen == KEY_META_HEAD_LEN && memcmp(key, KEY_META_HEAD, klen) == 0) {
    fail(b, FERRY_EINVAL, "the log is written only by appends: ", "meta head");
    return true;
  }
  return b->err.code != FERRY_OK;
}

/* Remembers the latest write of (cf, key) for point reads; a put's value is
 * the last vlen bytes of the batch. */
static void remember(ferry_wbatch *b, ferry_cf cf, const void *key, size_t klen, size_t vlen,
                     bool deleted) {
  char kb[1 + 4096], *k = kb;
  if (klen + 1 > sizeof kb && !(k = malloc(klen + 1))) goto oom;
  k[0] = (char)cf;
  if (klen) memcpy(k + 1, key, klen);
  strmap_entry *e = strmap_upsert(&b->point, k, klen + 1, NULL);
  if (k != kb) free(k);
  if (!e) goto oom;
  ov_val *v = e->val ? e->val : arena_alloc(&b->mem, sizeof *v, _Alignof(ov_val));
  if (!v) goto oom;
  size_t size = 0;
  rocksdb_writebatch_data(b->wb, &size);
  v->off = size - vlen;
  v->len = vlen;
  v->deleted = deleted;
  e->val = v;
  return;
oom:
  fail(b, FERRY_ENOMEM, "out of memory", "");
}

/* Files a write of the index family under the prefix it is scanned by. */
static void file_scan(ferry_wbatch *b, const void *key, size_t klen, bool deleted) {
  size_t plen = b->scan_prefix ? b->scan_prefix(key, klen) : 0;
  if (plen == 0 || plen > klen) return; /* read by key only */
  strmap_entry *e = strmap_upsert(&b->groups, key, plen, NULL);
  if (!e) goto oom;
  scan_group *g = e->val;
  if (!g && !(g = e->val = calloc(1, sizeof *g))) goto oom;
  if (g->n == g->cap) {
    size_t cap = g->cap ? g->cap * 2 : 2;
    scan_write *v = realloc(g->v, cap * sizeof *v);
    if (!v) goto oom;
    g->v = v;
    g->cap = cap;
  }
  scan_write *w = &g->v[g->n];
  if (!(w->rest = arena_alloc(&b->mem, klen - plen + 1, 1))) goto oom;
  memcpy(w->rest, (const char *)key + plen, klen - plen);
  w->len = klen - plen;
  w->deleted = deleted;
  g->n++;
  return;
oom:
  fail(b, FERRY_ENOMEM, "out of memory", "");
}

static void group_free(void *v) {
  scan_group *g = v;
  if (!g) return;
  free(g->v); /* the rests are in the batch's arena */
  free(g);
}

void ferry_wbatch_put(ferry_wbatch *b, ferry_cf cf, const void *key, size_t klen, const void *val,
                      size_t vlen) {
  if (refused(b, cf, key, klen)) return;
  const char *kp[2] = {b->p.b, key};
  size_t ks[2] = {b->p.len, klen};
  const char *vp[1] = {val};
  size_t vs[1] = {vlen};
  rocksdb_writebatch_putv_cf(b->wb, b->s->cf[cf], 2, kp, ks, 1, vp, vs);
  if (!b->indexed) return;
  remember(b, cf, key, klen, vlen, false);
  if (cf == FERRY_CF_INDEX) file_scan(b, key, klen, false);
}

void ferry_wbatch_delete(ferry_wbatch *b, ferry_cf cf, const void *key, size_t klen) {
  if (refused(b, cf, key, klen)) return;
  const char *kp[2] = {b->p.b, key};
  size_t ks[2] = {b->p.len, klen};
  rocksdb_writebatch_deletev_cf(b->wb, b->s->cf[cf], 2, kp, ks);
  if (!b->indexed) return;
  remember(b, cf, key, klen, 0, true);
  if (cf == FERRY_CF_INDEX) file_scan(b, key, klen, true);
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
    return fail(b, FERRY_EINVAL, "the range covers the meta head record", "");
  /* Reads through the batch could not see a range delete. */
  if (b->indexed) return fail(b, FERRY_EINVAL, "an indexed batch cannot delete a range", "");
  /* No lower bound is the prefix itself; no upper bound is the next customer. */
  const char *lp[2] = {b->p.b, lo ? lo : ""};
  size_t ls[2] = {b->p.len, lo ? lolen : 0};
  const char *hp[2] = {hi ? b->p.b : b->p.upper, hi ? hi : ""};
  size_t hs[2] = {b->p.len, hi ? hilen : 0};
  rocksdb_writebatch_delete_rangev_cf(b->wb, b->s->cf[cf], 2, lp, ls, hp, hs);
}

size_t ferry_wbatch_count(const ferry_wbatch *b) {
  return b ? (size_t)rocksdb_writebatch_count(b->wb) : 0;
}

size_t ferry_wbatch_bytes(const ferry_wbatch *b) {
  size_t size = 0;
  if (b) rocksdb_writebatch_data(b->wb, &size);
  return size;
}

/* Whether b may be committed now; if so, its keys enter its filter (every
 * commit path checks first, before any key can reach the store). */
static ferry_status commit_check(ferry_wbatch *b, ferry_error *err) {
  if (b->err.code) return ferry_error_set(err, b->err.code, "%s", b->err.msg);
  if (b->s->mode != FERRY_STORE_WRITE)
    return ferry_error_set(err, FERRY_EINVAL, "the store is open read-only");
  if (b->committing) return ferry_error_set(err, FERRY_EINVAL, "the batch is being committed");
  filter_admit(b);
  return FERRY_OK;
}

static int entry_cmp(const void *a, const void *b) {
  const strmap_entry *x = *(const strmap_entry *const *)a, *y = *(const strmap_entry *const *)b;
  return cmp_bytes(x->key, x->len, y->key, y->len);
}

/*
 * What an indexed batch writes: the latest write of each key, in key order
 * (family byte first), as a new WriteBatch; NULL when out of memory. The
 * batch's own WriteBatch holds its writes in the order they were made, and
 * RocksDB inserts each into a memtable skiplist with a search from the top.
 * In key order, each insert starts from where the last one ended: the
 * writer thread of a fold spent 40% less time (measured at 1M entities).
 * Keeping only the latest write of a key changes nothing that reads see.
 */
static rocksdb_writebatch_t *sorted_writes(ferry_wbatch *b) {
  size_t n = b->point.count, size = 0;
  const strmap_entry **v = malloc((n ? n : 1) * sizeof *v);
  if (v && !b->sorted) b->sorted = rocksdb_writebatch_create();
  rocksdb_writebatch_t *wb = v ? b->sorted : NULL;
  if (!wb) {
    free(v);
    return NULL;
  }
  rocksdb_writebatch_clear(wb); /* keeps its buffer: a batch's writes are megabytes */
  for (size_t i = 0; i < n; i++) v[i] = &b->point.entries[i];
  qsort(v, n, sizeof *v, entry_cmp);
  const char *data = rocksdb_writebatch_data(b->wb, &size);
  for (size_t i = 0; i < n; i++) {
    const ov_val *ov = v[i]->val;
    const char *kp[2] = {b->p.b, v[i]->key + 1};
    size_t ks[2] = {b->p.len, v[i]->len - 1};
    rocksdb_column_family_handle_t *cf = b->s->cf[(uint8_t)v[i]->key[0]];
    if (ov->deleted) {
      rocksdb_writebatch_deletev_cf(wb, cf, 2, kp, ks);
    } else {
      const char *vp[1] = {data + ov->off};
      size_t vs[1] = {ov->len};
      rocksdb_writebatch_putv_cf(wb, cf, 2, kp, ks, 1, vp, vs);
    }
  }
  free(v);
  return wb;
}

static ferry_status commit_write(ferry_wbatch *b, bool sync, ferry_error *err) {
  char *errmsg = NULL;
  /* every write of an indexed batch is in its point map (a range delete is refused) */
  rocksdb_writebatch_t *sorted = b->indexed ? sorted_writes(b) : NULL;
  if (b->indexed && !sorted) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  rocksdb_write(b->s->db, sync ? b->s->wo_sync : b->s->wo_nosync, sorted ? sorted : b->wb,
                &errmsg);
  return rdb_check(errmsg, err, "cannot write batch for customer %.*s", (int)b->p.len - 1,
                   b->p.b + 1);
}

ferry_status ferry_wbatch_commit(ferry_wbatch *b, bool sync, ferry_error *err) {
  if (!b) return ferry_error_set(err, FERRY_EINVAL, "ferry_wbatch_commit: no batch");
  ferry_status st = commit_check(b, err);
  return st ? st : commit_write(b, sync, err);
}

static void *commit_thread(void *arg) {
  ferry_wbatch *b = arg;
  b->commit_st = commit_write(b, false, &b->commit_err);
  return NULL;
}

ferry_status ferry_wbatch_commit_start(ferry_wbatch *b, ferry_error *err) {
  if (!b) return ferry_error_set(err, FERRY_EINVAL, "ferry_wbatch_commit_start: no batch");
  ferry_status st = commit_check(b, err);
  if (st) return st;
  if (pthread_create(&b->thread, NULL, commit_thread, b) != 0) /* write here, then */
    return commit_write(b, false, err);
  b->committing = true;
  return FERRY_OK;
}

struct ferry_bwriter {
  pthread_mutex_t mu;
  pthread_cond_t work, done;
  ferry_wbatch *head, *tail; /* handed over, not written yet */
  bool stop, started;
  pthread_t thread;
};

static void *bwriter_main(void *arg) {
  ferry_bwriter *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->head && !w->stop) pthread_cond_wait(&w->work, &w->mu);
    ferry_wbatch *b = w->head;
    if (!b) break; /* stopping, and nothing left */
    pthread_mutex_unlock(&w->mu);
    ferry_error err;
    ferry_status st = commit_write(b, b->via_sync, &err);
    pthread_mutex_lock(&w->mu);
    w->head = b->qnext;
    if (!w->head) w->tail = NULL;
    b->commit_st = st;
    if (st) b->commit_err = err;
    b->committing = false;
    pthread_cond_broadcast(&w->done);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

ferry_bwriter *ferry_bwriter_create(void) {
  ferry_bwriter *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->work, NULL);
  pthread_cond_init(&w->done, NULL);
  return w;
}

ferry_status ferry_bwriter_commit_start(ferry_bwriter *w, ferry_wbatch *b, bool sync,
                                        ferry_error *err) {
  if (!w || !b) return ferry_error_set(err, FERRY_EINVAL, "ferry_bwriter_commit_start: no batch");
  ferry_status st = commit_check(b, err);
  if (st) return st;
  pthread_mutex_lock(&w->mu);
  if (!w->started && pthread_create(&w->thread, NULL, bwriter_main, w) == 0) w->started = true;
  if (!w->started) { /* no thread: write here */
    pthread_mutex_unlock(&w->mu);
    return commit_write(b, sync, err);
  }
  b->via = w;
  b->via_sync = sync;
  b->qnext = NULL;
  b->committing = true;
  if (w->tail)
    w->tail->qnext = b;
  else
    w->head = b;
  w->tail = b;
  pthread_cond_signal(&w->work);
  pthread_mutex_unlock(&w->mu);
  return FERRY_OK;
}

void ferry_bwriter_destroy(ferry_bwriter *w) {
  if (!w) return;
  pthread_mutex_lock(&w->mu);
  w->stop = true;
  pthread_cond_signal(&w->work);
  pthread_mutex_unlock(&w->mu);
  if (w->started) pthread_join(w->thread, NULL);
  pthread_cond_destroy(&w->done);
  pthread_cond_destroy(&w->work);
  pthread_mutex_destroy(&w->mu);
  free(w);
}

bool ferry_wbatch_commit_done(ferry_wbatch *b) {
  if (!b) return true;
  if (!b->via) return !b->committing; /* a commit_start thread: only a join knows */
  pthread_mutex_lock(&b->via->mu);
  bool done = !b->committing;
  pthread_mutex_unlock(&b->via->mu);
  return done;
}

ferry_status ferry_wbatch_commit_wait(ferry_wbatch *b, ferry_error *err) {
  if (!b) return FERRY_OK;
  if (b->via) { /* the writer thread clears committing under its lock */
    pthread_mutex_lock(&b->via->mu);
    while (b->committing) pthread_cond_wait(&b->via->done, &b->via->mu);
    pthread_mutex_unlock(&b->via->mu);
    b->via = NULL;
  } else if (b->committing) {
    pthread_join(b->thread, NULL);
    b->committing = false;
  } else {
    return FERRY_OK;
  }
  if (b->commit_st && err) *err = b->commit_err;
  return b->commit_st;
}

void ferry_wbatch_destroy(ferry_wbatch *b) {
  if (!b) return;
  ferry_wbatch_commit_wait(b, NULL);
  if (b->wb) rocksdb_writebatch_destroy(b->wb);
  if (b->sorted) rocksdb_writebatch_destroy(b->sorted);
  strmap_free(&b->point, NULL);
  arena_free(&b->mem);
  strmap_free(&b->groups, group_free);
  free(b);
}

/* Keeps the buffers (the WriteBatch's, the maps' arrays), which a fold's
 * next batch fills to about the same size: allocated anew, every batch grew
 * them from nothing, copying and faulting in fresh pages (9% of the fold
 * thread at 1M entities, where a long fold returns freed pages at once). */
void ferry_wbatch_reset(ferry_wbatch *b) {
  if (!b) return;
  ferry_wbatch_commit_wait(b, NULL);
  rocksdb_writebatch_clear(b->wb);
  strmap_clear(&b->point, NULL);
  strmap_clear(&b->groups, group_free);
  arena_reset(&b->mem);
  b->under = NULL;
  b->filter = NULL;
  b->via = NULL;
  b->qnext = NULL;
  b->via_sync = false;
  b->committing = false;
  b->commit_st = FERRY_OK;
  ferry_error_clear(&b->commit_err);
  ferry_error_clear(&b->err);
}

/* The latest write of (cf, key) in b or the batches under it, or NULL; *in
 * the batch holding it. */
static const ov_val *overlay_find(const ferry_wbatch *b, ferry_cf cf, const void *key, size_t klen,
                                  const ferry_wbatch **in, uint64_t *hashp, bool *hashed) {
  char kb[1 + 4096], *k = kb;
  *hashed = false;
  if (klen + 1 > sizeof kb && !(k = malloc(klen + 1))) return NULL;
  k[0] = (char)cf;
  if (klen) memcpy(k + 1, key, klen);
  const ov_val *v = NULL;
  uint64_t hash = strmap_hash(k, klen + 1);
  *hashp = hash;
  *hashed = true;
  for (; b && !v; b = b->under) {
    const strmap_entry *e = strmap_get_hashed(&b->point, k, klen + 1, hash);
    if (e) {
      v = e->val;
      *in = b;
    }
  }
  if (k != kb) free(k);
  return v;
}

ferry_status ferry_wbatch_get(ferry_wbatch *b, ferry_cf cf, const void *key, size_t klen,
                              char **val, size_t *vlen, ferry_error *err) {
  if (!b || (unsigned)cf >= FERRY_CF_COUNT || !val || !vlen || (!key && klen))
    return ferry_error_set(err, FERRY_EINVAL, "ferry_wbatch_get: invalid arguments");
  const ferry_wbatch *in = NULL;
  uint64_t hash = 0;
  bool hashed = false;
  const ov_val *v = b->indexed ? overlay_find(b, cf, key, klen, &in, &hash, &hashed) : NULL;
  if (!v && hashed && filtered(b->filter, cf) && !bloom_maybe(&b->filter->keys, hash)) {
    *val = NULL;
    *vlen = 0;
    return not_found(err, cf);
  }
  if (!v) return kv_read(b->s, cf, &b->p, key, klen, val, vlen, err);
  *val = NULL;
  *vlen = 0;
  if (v->deleted)
    return not_found(err, cf);
  size_t size = 0;
  const char *data = rocksdb_writebatch_data(in->wb, &size);
  return copy_out(data + v->off, v->len, val, vlen, err);
}

/* One key a scan found: from the store (order 0, its rest at off in the
 * copy buffer until the scan is done) or a batch's write (later writes have
 * higher orders). */
typedef struct found {
  const char *rest;
  size_t off, len, order;
  bool deleted;
} found;

typedef struct found_list {
  found *v;
  size_t n, cap;
} found_list;

static bool found_add(found_list *l, const char *rest, size_t off, size_t len, size_t order,
                      bool deleted) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 16;
    found *v = realloc(l->v, cap * sizeof *v);
    if (!v) return false;
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = (found){rest, off, len, order, deleted};
  return true;
}

static int found_cmp(const void *a, const void *b) {
  const found *x = a, *y = b;
  int c = cmp_bytes(x->rest, x->len, y->rest, y->len);
  return c ? c : (x->order > y->order) - (x->order < y->order);
}

/* The store's keys under prefix, into l (their rests copied to *buf). The
 * iterator is bounded to the prefix itself: it seeks once, where the scan
 * starts, and RocksDB can skip table files that hold nothing under it. */
static ferry_status scan_store(ferry_wbatch *b, const void *prefix, size_t plen, found_list *l,
                               char **buf, ferry_error *err) {
  size_t n = 0, used = 0, cap = 0, start = l->n;
  char *k = store_key_join(&b->p, prefix, plen, &n), *hi = k ? malloc(n) : NULL;
  if (!k || !hi) {
    free(k);
    free(hi);
    return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  }
  /* the prefix is length-delimited, so +1 on its last byte below 0xff bounds it */
  size_t hilen = n;
  memcpy(hi, k, n);
  while (hilen > b->p.len && (uint8_t)hi[hilen - 1] == 0xff) hilen--;
  if (hilen > b->p.len)
    hi[hilen - 1]++;
  else
    memcpy(hi, b->p.upper, hilen = b->p.len);
  rdb_iter it0, *it = &it0;
  ferry_status st = rdb_iter_open(it, b->s, FERRY_CF_INDEX, k, n, hi, hilen, err);
  free(hi);
  if (st) {
    free(k);
    return st;
  }
  for (; rocksdb_iter_valid(it->it); rocksdb_iter_next(it->it)) {
    size_t klen;
    const char *key = rocksdb_iter_key(it->it, &klen);
    if (klen < n || memcmp(key, k, n) != 0) break;
    size_t len = klen - n;
    if (used + len > cap) {
      size_t c = cap ? cap * 2 : 256;
      while (c < used + len) c *= 2;
      char *nb = realloc(*buf, c);
      if (!nb) {
        st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
        break;
      }
      *buf = nb;
      cap = c;
    }
    memcpy(*buf + used, key + n, len);
    if (!found_add(l, NULL, used, len, 0, false)) {
      st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
      break;
    }
    used += len;
  }
  if (!st) st = rdb_iter_status(it, err, "cannot scan the index");
  rdb_iter_close(it);
  for (size_t i = start; i < l->n; i++) l->v[i].rest = *buf + l->v[i].off;
  free(k);
  return st;
}

ferry_status ferry_wbatch_scan(ferry_wbatch *b, const void *prefix, size_t plen,
                               ferry_status (*fn)(void *arg, const char *rest, size_t len),
                               void *arg, ferry_error *err) {
  if (!b || (!prefix && plen) || !fn)
    return ferry_error_set(err, FERRY_EINVAL, "ferry_wbatch_scan: invalid arguments");
  if (b->indexed && (!b->scan_prefix || b->scan_prefix(prefix, plen) != plen))
    return ferry_error_set(err, FERRY_EINVAL, "ferry_wbatch_scan: not a scan prefix of this batch");
  found_list l = {0};
  char *copies = NULL;
  /* A new iterator per scan: one kept for the batch's life sees the store as of its making,
   * and steps one by one over every key written since in the range it seeks into (the
   * batch under it lands tens of thousands): a fold took five times as long. */
  ferry_status st = FERRY_OK;
  if (!filtered(b->filter, FERRY_CF_INDEX) || bloom_maybe(&b->filter->keys, strmap_hash(prefix, plen)))
    st = scan_store(b, prefix, plen, &l, &copies, err);
  /* the batches' writes, oldest first: under's, then b's */
  const ferry_wbatch *layers[2];
  size_t nl = 0, order = 1;
  if (b->indexed && b->under) layers[nl++] = b->under;
  if (b->indexed) layers[nl++] = b;
  for (size_t i = 0; i < nl && !st; i++) {
    const strmap_entry *e = strmap_get(&layers[i]->groups, prefix, plen);
    const scan_group *g = e ? e->val : NULL;
    for (size_t k = 0; g && k < g->n && !st; k++)
      if (!found_add(&l, g->v[k].rest, 0, g->v[k].len, order++, g->v[k].deleted))
        st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  }
  /* the store's keys come sorted and unique: merge only when a batch wrote under the prefix */
  if (!st && order > 1 && l.n > 1) qsort(l.v, l.n, sizeof *l.v, found_cmp);
  /* the last write of each key decides; fn may write to b (rests are stable copies) */
  for (size_t i = 0; i < l.n && !st; i++) {
    if (i + 1 < l.n && cmp_bytes(l.v[i].rest, l.v[i].len, l.v[i + 1].rest, l.v[i + 1].len) == 0)
      continue;
    if (!l.v[i].deleted) st = fn(arg, l.v[i].rest, l.v[i].len);
  }
  free(l.v);
  free(copies);
  return st;
}
