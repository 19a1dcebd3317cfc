/*
 * Removing the leftovers of appends that never committed.
 *
 * An append writes its events and dedup entries (large ones in several
 * unsynced chunks) and then, last and synced, the customer's head. A crash
 * or a failed write before the head leaves events above the head and dedup
 * entries pointing at them. Readers never look above the head, but dedup
 * would: a leftover entry "id -> 105" would later make the real change 105
 * look like a duplicate once the head passes 105. So the writer removes them
 * when it opens, and the committer after a failed chunked write.
 *
 * Each leftover event's change carries its id, so the work is bounded by the
 * number of leftovers: read the event, delete its dedup entry (if it still
 * points above the head), delete the event. An event and its dedup entry are
 * always written in the same batch, and RocksDB syncs closed WAL files
 * before flushing when there are several families, so after a crash no
 * dedup entry survives without its event. Only if a leftover event does not
 * decode (corruption) do we fall back to scanning the customer's dedup range.
 */
#include <string.h>

#include "log/event.h"
#include "log/store_impl.h"

/* Deletes are written in batches of this many, unsynced until the last. */
#define RECOVER_BATCH 10000

typedef struct cleaner {
  ferry_store *s;
  const key_prefix *p;
  uint64_t head;
  rocksdb_writebatch_t *wb;
  bool wrote; /* some unsynced batch went out: the last write must sync */
} cleaner;

static ferry_status flush(cleaner *c, bool last, ferry_error *err) {
  char *errmsg = NULL;
  if (rocksdb_writebatch_count(c->wb) == 0 && !(last && c->wrote)) return FERRY_OK;
  rocksdb_write(c->s->db, last ? c->s->wo_sync : c->s->wo_nosync, c->wb, &errmsg);
  rocksdb_writebatch_clear(c->wb);
  c->wrote = true;
  return rdb_check(errmsg, err, "cannot remove uncommitted events of customer %.*s",
                   (int)c->p->len - 1, c->p->b + 1);
}

/* Queues the delete of dedup[id] if it points above the head. */
static ferry_status drop_dedup(cleaner *c, const uint8_t *id, size_t idlen, ferry_error *err) {
  char key[KEY_PREFIX_MAX + FERRY_STORE_ID_MAX];
  char *errmsg = NULL;
  size_t vlen = 0;
  memcpy(key, c->p->b, c->p->len);
  memcpy(key + c->p->len, id, idlen);
  rocksdb_pinnableslice_t *v = rocksdb_get_pinned_cf(c->s->db, c->s->ro, c->s->cf[FERRY_CF_DEDUP],
                                                     key, c->p->len + idlen, &errmsg);
  ferry_status st = rdb_check(errmsg, err, "cannot read dedup entry");
  if (st || !v) goto done;
  const char *val = rocksdb_pinnableslice_value(v, &vlen);
  if (vlen == 8 && ferry_be64_get((const uint8_t *)val) > c->head)
    rocksdb_writebatch_delete_cf(c->wb, c->s->cf[FERRY_CF_DEDUP], key, c->p->len + idlen);
done:
  if (v) rocksdb_pinnableslice_destroy(v);
  return st;
}

/* The fallback: every dedup entry of the customer that points above the head. */
static ferry_status drop_dedup_scan(cleaner *c, ferry_error *err) {
  rdb_iter it;
  ferry_status st =
      rdb_iter_open(&it, c->s, FERRY_CF_DEDUP, c->p->b, c->p->len, c->p->upper, c->p->len, err);
  if (st) return st;
  for (; rocksdb_iter_valid(it.it); rocksdb_iter_next(it.it)) {
    size_t klen, vlen;
    const char *k = rocksdb_iter_key(it.it, &klen);
    const char *v = rocksdb_iter_value(it.it, &vlen);
    if (vlen == 8 && ferry_be64_get((const uint8_t *)v) > c->head)
      rocksdb_writebatch_delete_cf(c->wb, c->s->cf[FERRY_CF_DEDUP], k, klen);
    if (rocksdb_writebatch_count(c->wb) >= RECOVER_BATCH && (st = flush(c, false, err))) goto done;
  }
  st = rdb_iter_status(&it, err, "cannot scan dedup entries");
done:
  rdb_iter_close(&it);
  return st;
}

/* Deletes every event above the head and the dedup entries they own. */
static ferry_status drop_events(cleaner *c, bool *undecodable, ferry_error *err) {
  char lo[KEY_PREFIX_MAX + 8];
  rdb_iter it;
  memcpy(lo, c->p->b, c->p->len);
  ferry_be64_put((uint8_t *)lo + c->p->len, c->head + 1);
  ferry_status st =
      rdb_iter_open(&it, c->s, FERRY_CF_EVENTS, lo, c->p->len + 8, c->p->upper, c->p->len, err);
  if (st) return st;
  for (; rocksdb_iter_valid(it.it); rocksdb_iter_next(it.it)) {
    size_t klen, vlen, clen = 0, idlen = 0;
    const char *k = rocksdb_iter_key(it.it, &klen);
    const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it.it, &vlen), *change, *id;
    if (event_change(v, vlen, &change, &clen) && event_change_id(change, clen, &id, &idlen) &&
        idlen > 0 && idlen <= FERRY_STORE_ID_MAX) {
      if ((st = drop_dedup(c, id, idlen, err))) goto done;
    } else {
      *undecodable = true;
    }
    rocksdb_writebatch_delete_cf(c->wb, c->s->cf[FERRY_CF_EVENTS], k, klen);
    if (rocksdb_writebatch_count(c->wb) >= RECOVER_BATCH && (st = flush(c, false, err))) goto done;
  }
  st = rdb_iter_status(&it, err, "cannot scan uncommitted events");
done:
  rdb_iter_close(&it);
  return st;
}

ferry_status store_recover_customer(ferry_store *s, const key_prefix *p, uint64_t head,
                                    ferry_error *err) {
  cleaner c = {s, p, head, rocksdb_writebatch_create(), false};
  bool undecodable = false;
  ferry_status st = FERRY_OK;
  if (!c.wb) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  if ((st = drop_events(&c, &undecodable, err))) goto done;
  if (undecodable && (st = drop_dedup_scan(&c, err))) goto done;
  st = flush(&c, true, err);
done:
  rocksdb_writebatch_destroy(c.wb);
  return st;
}

static ferry_status recover_one(void *arg, const key_prefix *p, const char *name, bool *stop,
                                ferry_error *err) {
  ferry_store *s = arg;
  uint64_t head = 0;
  (void)name, (void)stop;
  ferry_status st = store_read_head(s, p, &head, err);
  return st ? st : store_recover_customer(s, p, head, err);
}

ferry_status store_recover_all(ferry_store *s, ferry_error *err) {
  /* Walk the events family, not meta: a customer whose first append never
   * committed has leftovers but no head. */
  return store_walk_customers(s, FERRY_CF_EVENTS, recover_one, s, err);
}
