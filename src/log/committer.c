/*
 * The committer: the one writer of events, dedup entries and heads, and the
 * commit thread that runs it.
 *
 * DESIGN
 * Appends queue requests; the thread takes *every* queued request at once
 * (a group), and for the group:
 *   1. finds each request's customer in the head cache (loading the head
 *      from meta the first time);
 *   2. walks the requests in queue order, looking their change ids up in
 *      the dedup family with one batched multi-get per slice of changes; a
 *      change is a duplicate if its id is committed (dedup seq <= head) or
 *      was seen earlier in the group (an in-memory xxHash set);
 *   3. gives every new change the customer's next seq and puts its event
 *      (seq -> Event framed around the caller's packed Change) and its dedup
 *      entry (id -> seq) into one WriteBatch;
 *   4. puts each touched customer's new head into meta and writes the batch
 *      with sync=true: one WAL sync for the whole group (group commit).
 * While the group waits for its sync, new requests queue up and form the
 * next group, so under load each sync carries many requests.
 *
 * One shortcut: a synchronous append that finds nothing queued and nothing
 * being committed runs its own group on its own thread, instead of waking
 * the commit thread and sleeping until it answers. A lone writer (the CLI,
 * a benchmark, one busy feed) then pays no thread hand-offs, which cost two
 * context switches per batch and far more on a loaded machine. Whoever runs
 * a group holds the commit token (`busy`), so the commit state below still
 * has one user at a time; requests that arrive meanwhile queue up for the
 * commit thread, which starts as soon as the token is free. Async requests
 * always go through the commit thread, where their callbacks run.
 *
 * A group whose batch grows past CHUNK_ENTRIES or CHUNK_BYTES writes it out
 * early, unsynced, and carries on; the heads still go last, in the final
 * synced write. A crash before that leaves only events and dedup entries
 * above the heads, which readers ignore and recovery removes (recover.c).
 * If a write fails after a chunk went out, the thread removes the chunks
 * itself; if even that fails, it refuses further appends until the store
 * is reopened (which recovers).
 *
 * Every request in a group succeeds or fails together with the group's
 * writes; a request that fails alone (invalid, or its head cannot be read)
 * adds nothing to the batch.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log/committer.h"
#include "log/event.h"
#include "log/htab.h"

#define CHUNK_ENTRIES (2 * 20000) /* an event and a dedup entry per change */
#define CHUNK_BYTES (8u * 1024 * 1024)
#define LOOKUP_SLICE 2048 /* dedup keys per multi-get */

struct cust {
  key_prefix p;
  uint32_t tag;         /* its number in the id set */
  uint64_t head;        /* committed */
  uint64_t next;        /* head including what the current group has staged */
  uint64_t group;       /* the last group that touched it */
  struct cust *touched; /* next customer touched by the current group */
};

struct committer {
  ferry_store *s;
  pthread_mutex_t mu;
  pthread_cond_t work;
  append_req *qhead, *qtail;
  bool closing;
  bool busy;        /* the commit token: a group is being run (by either thread) */
  bool locks_ready; /* mu and work were initialised */
  bool started;
  pthread_t thread;
  ferry_store_stats stats; /* under mu */

  /* Everything below belongs to whoever holds the commit token. */
  htab custs; /* prefix -> cust */
  uint32_t ncust;
  htab ids; /* (customer tag, change id) seen in this group */
  rocksdb_writebatch_t *wb;
  uint64_t group;
  cust *touched;
  bool chunked;       /* part of this group is already written, unsynced */
  ferry_error broken; /* set: appends are refused until reopen */
  char *val;          /* one event value being assembled */
  size_t val_cap;
  char *arena; /* dedup keys of one lookup slice */
  size_t arena_cap;
  const char *keys[LOOKUP_SLICE];
  size_t klens[LOOKUP_SLICE];
  rocksdb_pinnableslice_t *vals[LOOKUP_SLICE];
  char *errs[LOOKUP_SLICE];
};

/* ------------------------------------------------------ head cache --- */

static ferry_status cust_get(committer *c, const key_prefix *p, cust **out, ferry_error *err) {
  uint64_t h = htab_hash(0, p->b, p->len);
  htab_entry *e = htab_find(&c->custs, h, 0, p->b, p->len);
  ferry_status st = FERRY_OK;
  bool added;
  cust *cu = NULL;
  if (e) {
    *out = e->val;
    return FERRY_OK;
  }
  if (!(cu = calloc(1, sizeof *cu))) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  cu->p = *p;
  if ((st = store_read_head(c->s, p, &cu->head, err))) goto done;
  cu->next = cu->head;
  cu->tag = ++c->ncust;
  if (!htab_add(&c->custs, h, 0, cu->p.b, cu->p.len, cu, &added)) {
    st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
    goto done;
  }
  *out = cu;
  cu = NULL;
done:
  free(cu);
  return st;
}

static void cust_touch(committer *c, cust *cu) {
  if (cu->group == c->group) return;
  cu->group = c->group;
  cu->touched = c->touched;
  c->touched = cu;
}

/* ------------------------------------------------------------ writes --- */

static ferry_status write_batch(committer *c, bool sync, ferry_error *err) {
  char *errmsg = NULL;
  rocksdb_write(c->s->db, sync ? c->s->wo_sync : c->s->wo_nosync, c->wb, &errmsg);
  rocksdb_writebatch_clear(c->wb);
  return rdb_check(errmsg, err, "cannot write to the log");
}

/* Writes the batch out unsynced once it is big enough; the heads come later. */
static ferry_status maybe_chunk(committer *c, ferry_error *err) {
  size_t bytes;
  rocksdb_writebatch_data(c->wb, &bytes);
  if (rocksdb_writebatch_count(c->wb) < CHUNK_ENTRIES && bytes < CHUNK_BYTES) return FERRY_OK;
  c->chunked = true;
  ferry_status st = write_batch(c, false, err);
  if (!st) {
    pthread_mutex_lock(&c->mu);
    c->stats.chunks++;
    pthread_mutex_unlock(&c->mu);
  }
  return st;
}

/*
 * Puts change ch's event (seq -> header + packed Change) and dedup entry
 * (id -> seq). Keys and values are assembled into contiguous buffers here:
 * RocksDB's C "putv" (slice parts) allocates two vectors per call, which
 * costs more than copying a few hundred bytes.
 */
static ferry_status stage_event(committer *c, const cust *cu, uint64_t seq, int64_t now_us,
                                const ferry_change_ref *ch, ferry_error *err) {
  char key[KEY_PREFIX_MAX + 8];
  size_t need = EVENT_HDR_MAX + ch->pb_len;
  if (need > c->val_cap) {
    char *v = realloc(c->val, need);
    if (!v) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
    c->val = v;
    c->val_cap = need;
  }
  size_t hlen = event_header((uint8_t *)c->val, seq, now_us, ch->pb_len);
  memcpy(c->val + hlen, ch->pb, ch->pb_len);
  memcpy(key, cu->p.b, cu->p.len);
  ferry_be64_put((uint8_t *)key + cu->p.len, seq);
  rocksdb_writebatch_put_cf(c->wb, c->s->cf[FERRY_CF_EVENTS], key, cu->p.len + 8, c->val,
                            hlen + ch->pb_len);
  /* The dedup value is the seq, already in the event key. */
  const char *seqb = key + cu->p.len;
  char dkey[KEY_PREFIX_MAX + FERRY_STORE_ID_MAX];
  memcpy(dkey, cu->p.b, cu->p.len);
  memcpy(dkey + cu->p.len, ch->id, ch->id_len);
  rocksdb_writebatch_put_cf(c->wb, c->s->cf[FERRY_CF_DEDUP], dkey, cu->p.len + ch->id_len, seqb, 8);
  return FERRY_OK;
}

/* ------------------------------------------------------------ dedup --- */

/* RocksDB's default (bytewise) key order. */
static int cmp_keys(const char *a, size_t alen, const char *b, size_t blen) {
  int c = memcmp(a, b, alen < blen ? alen : blen);
  return c ? c : (alen > blen) - (alen < blen);
}

/* Looks up the dedup entries of changes[0..m) with one multi-get. */
static ferry_status lookup_slice(committer *c, const cust *cu, const ferry_change_ref *ch, size_t m,
                                 ferry_error *err) {
  size_t need = 0, off = 0;
  for (size_t i = 0; i < m; i++)
    need += cu->p.len + ch[i].id_len;
  if (need > c->arena_cap) {
    char *a = realloc(c->arena, need);
    if (!a) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
    c->arena = a;
    c->arena_cap = need;
  }
  for (size_t i = 0; i < m; i++) {
    c->keys[i] = c->arena + off;
    memcpy(c->arena + off, cu->p.b, cu->p.len);
    memcpy(c->arena + off + cu->p.len, ch[i].id, ch[i].id_len);
    c->klens[i] = cu->p.len + ch[i].id_len;
    off += c->klens[i];
  }
  /* Ids often arrive in key order (a feed's sequence numbers); then RocksDB
   * need not sort a copy of the keys. */
  bool sorted = true;
  for (size_t i = 1; sorted && i < m; i++)
    sorted = cmp_keys(c->keys[i - 1], c->klens[i - 1], c->keys[i], c->klens[i]) <= 0;
  rocksdb_batched_multi_get_cf(c->s->db, c->s->ro, c->s->cf[FERRY_CF_DEDUP], m, c->keys, c->klens,
                               c->vals, c->errs, sorted);
  ferry_status st = FERRY_OK;
  for (size_t i = 0; i < m; i++) {
    /* Check (and free) every error, keep the first. */
    ferry_status e = rdb_check(c->errs[i], st ? NULL : err, "cannot look up change ids");
    if (!st) st = e;
  }
  return st;
}

/* Is change i of the slice already committed (dedup seq <= head)? Frees its value. */
static bool committed(committer *c, const cust *cu, size_t i) {
  bool found = false;
  if (c->vals[i]) {
    size_t vlen;
    const char *v = rocksdb_pinnableslice_value(c->vals[i], &vlen);
    found = vlen == 8 && ferry_be64_get((const uint8_t *)v) <= cu->head;
    rocksdb_pinnableslice_destroy(c->vals[i]);
    c->vals[i] = NULL;
  }
  return found;
}

static void free_slice(committer *c, size_t m) {
  for (size_t i = 0; i < m; i++) {
    if (c->vals[i]) rocksdb_pinnableslice_destroy(c->vals[i]);
    c->vals[i] = NULL;
  }
}

/* Stages changes[0..m) of request r (its customer cu). */
static ferry_status stage_slice(committer *c, append_req *r, cust *cu, const ferry_change_ref *ch,
                                size_t m, int64_t now_us, ferry_error *err) {
  /* A customer with no committed events has no committed ids either. */
  bool fresh = cu->head == 0;
  ferry_status st = fresh ? FERRY_OK : lookup_slice(c, cu, ch, m, err);
  for (size_t i = 0; !st && i < m; i++) {
    bool dup = !fresh && committed(c, cu, i), added = false;
    if (!dup) {
      uint64_t h = htab_hash(cu->tag, ch[i].id, ch[i].id_len);
      if (!htab_add(&c->ids, h, cu->tag, ch[i].id, ch[i].id_len, NULL, &added)) {
        st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
        break;
      }
      dup = !added;
    }
    if (dup) {
      r->res.duplicates++;
      continue;
    }
    uint64_t seq = ++cu->next;
    if (!r->res.first_seq) r->res.first_seq = seq;
    r->res.appended++;
    if (!(st = stage_event(c, cu, seq, now_us, &ch[i], err))) st = maybe_chunk(c, err);
  }
  if (!fresh) free_slice(c, m);
  return st;
}

static ferry_status stage_request(committer *c, append_req *r, int64_t now_us, ferry_error *err) {
  ferry_status st = FERRY_OK;
  cust_touch(c, r->cu);
  for (size_t off = 0; !st && off < r->n; off += LOOKUP_SLICE) {
    size_t m = r->n - off < LOOKUP_SLICE ? r->n - off : LOOKUP_SLICE;
    st = stage_slice(c, r, r->cu, r->changes + off, m, now_us, err);
  }
  r->res.head_seq = r->cu->next;
  return st;
}

/* ------------------------------------------------------------ groups --- */

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Writes every touched customer's head, then the batch, synced. */
static ferry_status commit_heads(committer *c, ferry_error *err) {
  for (cust *cu = c->touched; cu; cu = cu->touched) {
    if (cu->next == cu->head) continue;
    uint8_t v[8];
    ferry_be64_put(v, cu->next);
    const char *kp[2] = {cu->p.b, KEY_META_HEAD};
    size_t ks[2] = {cu->p.len, KEY_META_HEAD_LEN};
    const char *vp[1] = {(const char *)v};
    size_t vs[1] = {8};
    rocksdb_writebatch_putv_cf(c->wb, c->s->cf[FERRY_CF_META], 2, kp, ks, 1, vp, vs);
  }
  if (rocksdb_writebatch_count(c->wb) == 0 && !c->chunked) return FERRY_OK; /* all duplicates */
  ferry_status st = write_batch(c, true, err);
  if (!st) {
    pthread_mutex_lock(&c->mu);
    c->stats.syncs++;
    pthread_mutex_unlock(&c->mu);
  }
  return st;
}

/* After a failed group: forget what it staged, and remove what it wrote. */
static void rollback(committer *c) {
  ferry_error err;
  rocksdb_writebatch_clear(c->wb);
  for (cust *cu = c->touched; cu; cu = cu->touched) {
    if (c->chunked && !c->broken.code && store_recover_customer(c->s, &cu->p, cu->head, &err)) {
      ferry_error_set(&c->broken, err.code,
                      "an earlier append failed and its leftovers could not be removed (%s); "
                      "reopen the store",
                      err.msg);
    }
    cu->next = cu->head;
  }
}

/* Attaches each pending request to its customer (a request whose head
 * cannot be read fails alone); returns how many changes the group holds. */
static size_t attach(committer *c, append_req *reqs) {
  size_t total = 0;
  for (append_req *r = reqs; r; r = r->next) {
    if (r->st) continue;
    if (c->broken.code) {
      r->st = ferry_error_set(&r->err, c->broken.code, "%s", c->broken.msg);
      continue;
    }
    if ((r->st = cust_get(c, &r->p, &r->cu, &r->err))) continue;
    total += r->n;
  }
  return total;
}

/* Hands every request its outcome: async ones through their callback (then
 * freed), sync ones by waking their caller. */
static void complete(committer *c, append_req *reqs, ferry_status st, const ferry_error *err) {
  pthread_mutex_lock(&c->mu);
  c->stats.groups++;
  for (append_req *r = reqs; r; r = r->next) {
    if (!r->st && st) {
      r->st = st;
      r->err = *err;
    }
    if (r->st) {
      memset(&r->res, 0, sizeof r->res);
      c->stats.failures++;
    } else {
      c->stats.appends++;
      c->stats.events += r->res.appended;
      c->stats.duplicates += r->res.duplicates;
    }
  }
  pthread_mutex_unlock(&c->mu);
  for (append_req *r = reqs, *next; r; r = next) {
    next = r->next; /* r is gone once completed */
    if (r->cb) {
      r->cb(r->arg, r->st, &r->res, &r->err);
      free(r);
    } else {
      pthread_mutex_lock(&c->mu);
      r->done = true;
      pthread_cond_signal(r->done_cv);
      pthread_mutex_unlock(&c->mu);
    }
  }
}

static void run_group(committer *c, append_req *reqs) {
  ferry_error err;
  ferry_status st = FERRY_OK;
  ferry_error_clear(&err);
  c->group++;
  c->touched = NULL;
  c->chunked = false;
  size_t total = attach(c, reqs);
  if (htab_reserve(&c->ids, total)) st = ferry_error_set(&err, FERRY_ENOMEM, "out of memory");
  int64_t now = now_us(); /* one ingest time for the group: it commits at one instant */
  for (append_req *r = reqs; !st && r; r = r->next) {
    if (!r->st) st = stage_request(c, r, now, &err);
  }
  if (!st) st = commit_heads(c, &err);
  if (st) {
    rollback(c);
  } else {
    for (cust *cu = c->touched; cu; cu = cu->touched)
      cu->head = cu->next;
  }
  htab_clear(&c->ids);
  complete(c, reqs, st, &err);
}

static void *thread_main(void *arg) {
  committer *c = arg;
  pthread_mutex_lock(&c->mu);
  for (;;) {
    while (c->busy || (!c->qhead && !c->closing))
      pthread_cond_wait(&c->work, &c->mu);
    if (!c->qhead) break; /* closing, and the queue is drained */
    append_req *group = c->qhead;
    c->qhead = c->qtail = NULL;
    c->busy = true;
    pthread_mutex_unlock(&c->mu);
    run_group(c, group);
    pthread_mutex_lock(&c->mu);
    c->busy = false;
  }
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

/* ------------------------------------------------------------- queue --- */

ferry_status committer_enqueue(committer *c, append_req *r, ferry_error *err) {
  ferry_status st = FERRY_OK;
  r->next = NULL;
  pthread_mutex_lock(&c->mu);
  if (c->closing) {
    st = ferry_error_set(err, FERRY_EINVAL, "the store is closing");
  } else {
    if (c->qtail)
      c->qtail->next = r;
    else
      c->qhead = r;
    c->qtail = r;
    pthread_cond_signal(&c->work);
  }
  pthread_mutex_unlock(&c->mu);
  return st;
}

ferry_status committer_run_or_enqueue(committer *c, append_req *r, ferry_error *err) {
  r->next = NULL;
  pthread_mutex_lock(&c->mu);
  if (c->busy || c->qhead || c->closing) {
    pthread_mutex_unlock(&c->mu);
    return committer_enqueue(c, r, err);
  }
  c->busy = true;
  pthread_mutex_unlock(&c->mu);
  run_group(c, r); /* completes r */
  pthread_mutex_lock(&c->mu);
  c->busy = false;
  if (c->qhead) pthread_cond_signal(&c->work); /* what queued up meanwhile */
  pthread_mutex_unlock(&c->mu);
  return FERRY_OK;
}

void committer_wait(committer *c, append_req *r) {
  pthread_mutex_lock(&c->mu);
  while (!r->done)
    pthread_cond_wait(r->done_cv, &c->mu);
  pthread_mutex_unlock(&c->mu);
}

void committer_stats(committer *c, ferry_store_stats *out) {
  pthread_mutex_lock(&c->mu);
  *out = c->stats;
  pthread_mutex_unlock(&c->mu);
}

/* ------------------------------------------------------------- life --- */

ferry_status committer_start(ferry_store *s, ferry_error *err) {
  committer *c = calloc(1, sizeof *c);
  if (!c) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  c->s = s;
  s->com = c;
  /* From here on committer_stop (via ferry_store_close) cleans up whatever exists. */
  if (pthread_mutex_init(&c->mu, NULL)) {
    free(c);
    s->com = NULL;
    return ferry_error_set(err, FERRY_ENOMEM, "cannot create the commit thread's lock");
  }
  if (pthread_cond_init(&c->work, NULL)) {
    pthread_mutex_destroy(&c->mu);
    free(c);
    s->com = NULL;
    return ferry_error_set(err, FERRY_ENOMEM, "cannot create the commit thread's lock");
  }
  c->locks_ready = true;
  if (!(c->wb = rocksdb_writebatch_create()))
    return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  if (pthread_create(&c->thread, NULL, thread_main, c))
    return ferry_error_set(err, FERRY_ENOMEM, "cannot start the commit thread");
  c->started = true;
  return FERRY_OK;
}

void committer_stop(committer *c) {
  if (!c) return;
  if (c->started) {
    pthread_mutex_lock(&c->mu);
    c->closing = true;
    pthread_cond_signal(&c->work);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
  }
  for (size_t i = 0; i < c->custs.cap; i++)
    free(c->custs.slots[i].val);
  htab_free(&c->custs);
  htab_free(&c->ids);
  if (c->wb) rocksdb_writebatch_destroy(c->wb);
  free(c->arena);
  free(c->val);
  if (c->locks_ready) {
    pthread_cond_destroy(&c->work);
    pthread_mutex_destroy(&c->mu);
  }
  free(c);
}
