/*
 * The projector's life cycle: opening a customer's projection, its
 * checkpoint, rewind / resume / replay, and the state `ferry status` shows.
 * Folding is in fold.c, plans in plan.c, applier outcomes in record.c.
 *
 * A rewind or replay is a rebuild: one batch drops every derived family
 * (mirror, join indexes, desired, dirty) and records the target; then the log
 * is folded again up to it, and finally every applied entity without desired
 * state is marked dirty (it must be deleted). The target and a "rebuilding"
 * flag stay in the checkpoint until the end, so a crash part-way resumes the
 * rebuild the next time the projection is opened for work.
 */
#include <stdlib.h>
#include <string.h>

#include "ferry/event.h"
#include "projector/proj.h"

void proj_hex(const uint8_t *b, size_t n, char *out) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hex[b[i] >> 4];
    out[2 * i + 1] = hex[b[i] & 15];
  }
  out[2 * n] = '\0';
}

ferry_status proj_get(ferry_projector *p, ferry_wbatch *b, ferry_cf cf, const ferry_key *k,
                      char **val, size_t *vlen, ferry_error *err) {
  if (k->overflow) return FERRY_ENOTFOUND;
  if (b) return ferry_wbatch_get(b, cf, k->b, k->len, val, vlen, err);
  return ferry_kv_get(p->store, cf, p->customer, k->b, k->len, val, vlen, err);
}

void proj_put_pb(ferry_wbatch *b, ferry_cf cf, const ferry_key *k, const ProtobufCMessage *msg) {
  uint8_t stackbuf[4096];
  size_t n = protobuf_c_message_get_packed_size(msg);
  uint8_t *buf = n <= sizeof stackbuf ? stackbuf : malloc(n);
  if (!buf || k->overflow) return; /* OOM surfaces at commit: the batch is incomplete */
  protobuf_c_message_pack(msg, buf);
  ferry_wbatch_put(b, cf, k->b, k->len, buf, n);
  if (buf != stackbuf) free(buf);
}

#define DEFINE_GET(fn, Type, unpack, what)                                                        \
  ferry_status fn(ferry_projector *p, ferry_wbatch *b, const char *entity, const char *ekey,    \
                  Type **out, ferry_error *err) {                                               \
    ferry_key k;                                                                                \
    char *val = NULL;                                                                           \
    size_t vlen = 0;                                                                            \
    *out = NULL;                                                                                \
    ferry_key_entity(&k, entity, ekey);                                                         \
    ferry_status st = proj_get(p, b, what, &k, &val, &vlen, err);                               \
    if (st == FERRY_ENOTFOUND) return FERRY_OK;                                                 \
    if (st) return st;                                                                          \
    *out = unpack(NULL, vlen, (const uint8_t *)val);                                            \
    free(val);                                                                                  \
    if (!*out)                                                                                  \
      return ferry_error_set(err, FERRY_ECORRUPT, "%s record of %s/%s does not decode",         \
                             #what, entity, ekey);                                              \
    return FERRY_OK;                                                                            \
  }

DEFINE_GET(proj_desired_get, Ferry__V1__DesiredEntity, ferry__v1__desired_entity__unpack,
           FERRY_CF_DESIRED)
DEFINE_GET(proj_applied_get, Ferry__V1__AppliedEntity, ferry__v1__applied_entity__unpack,
           FERRY_CF_APPLIED)

bool proj_is_dirty(const Ferry__V1__DesiredEntity *d, const Ferry__V1__AppliedEntity *a) {
  bool exists = a && a->state != FERRY__V1__ENTITY_STATE__ENTITY_STATE_NONE;
  if (exists && a->uncertain) return true; /* a call in doubt: send again */
  if (!d || d->deleted) return exists;
  if (a && a->failed && a->failed_hash.len == d->hash.len &&
      memcmp(a->failed_hash.data, d->hash.data, d->hash.len) == 0)
    return false; /* refused as it is: wait for a change or an explicit retry */
  if (!a || a->state != FERRY__V1__ENTITY_STATE__ENTITY_STATE_CREATED) return true;
  return a->desired_hash.len != d->hash.len ||
         memcmp(a->desired_hash.data, d->hash.data, d->hash.len) != 0;
}

void proj_mark_dirty(ferry_projector *p, ferry_wbatch *b, size_t entity, const char *ekey,
                     bool dirty) {
  ferry_key k;
  ferry_key_dirty(&k, (unsigned)entity, ferry_mapping_entity_name(p->map, entity), ekey);
  if (k.overflow) return;
  if (dirty) ferry_wbatch_put(b, FERRY_CF_DIRTY, k.b, k.len, "", 0);
  else ferry_wbatch_delete(b, FERRY_CF_DIRTY, k.b, k.len);
}

static ferry_status set_str(char **dst, const char *src) {
  char *s = strdup(src ? src : "");
  if (!s) return FERRY_ENOMEM;
  free(*dst);
  *dst = s;
  return FERRY_OK;
}

ferry_status proj_state_load(ferry_projector *p, ferry_error *err) {
  ferry_key k;
  char *val = NULL;
  size_t vlen = 0;
  ferry_key_reset(&k);
  ferry_key_raw(&k, FERRY_META_PROJECTION, strlen(FERRY_META_PROJECTION));
  ferry_status st = proj_get(p, NULL, FERRY_CF_META, &k, &val, &vlen, err);
  Ferry__V1__ProjectionState *s = NULL;
  if (st == FERRY_ENOTFOUND) st = FERRY_OK;
  else if (!st && !(s = ferry__v1__projection_state__unpack(NULL, vlen, (const uint8_t *)val)))
    st = ferry_error_set(err, FERRY_ECORRUPT, "projection checkpoint of %s does not decode",
                         p->customer);
  free(val);
  if (st) return st;
  p->folded_seq = s ? s->folded_seq : 0;
  p->held = s && s->held;
  p->hold_seq = s ? s->hold_seq : 0;
  p->rebuild_target = s ? s->rebuild_target : 0;
  p->rebuilding = s && s->rebuilding;
  p->last_fold_us = s ? s->last_fold_us : 0;
  p->last_sync_us = s ? s->last_sync_us : 0;
  p->audit_seq = s ? s->audit_seq : 0;
  p->restored = s && s->restored;
  if (set_str(&p->mapping_hash, s ? s->mapping_hash : "") ||
      set_str(&p->last_sync_result, s ? s->last_sync_result : ""))
    st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  if (s) ferry__v1__projection_state__free_unpacked(s, NULL);
  return st;
}

ferry_status proj_state_put(ferry_projector *p, ferry_wbatch *b, ferry_error *err) {
  (void)err;
  Ferry__V1__ProjectionState s = FERRY__V1__PROJECTION_STATE__INIT;
  s.folded_seq = p->folded_seq;
  s.held = p->held;
  s.hold_seq = p->hold_seq;
  s.mapping_hash = p->mapping_hash;
  s.rebuild_target = p->rebuild_target;
  s.rebuilding = p->rebuilding;
  s.last_fold_us = p->last_fold_us;
  s.last_sync_us = p->last_sync_us;
  s.last_sync_result = p->last_sync_result;
  s.audit_seq = p->audit_seq;
  s.restored = p->restored;
  ferry_key k;
  ferry_key_reset(&k);
  ferry_key_raw(&k, FERRY_META_PROJECTION, strlen(FERRY_META_PROJECTION));
  proj_put_pb(b, FERRY_CF_META, &k, &s.base);
  return FERRY_OK;
}

/* Commits just the checkpoint. */
static ferry_status state_commit(ferry_projector *p, bool sync, ferry_error *err) {
  ferry_wbatch *b = ferry_wbatch_create(p->store, p->customer);
  if (!b) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  ferry_status st = proj_state_put(p, b, err);
  if (!st) st = ferry_wbatch_commit(b, sync, err);
  ferry_wbatch_destroy(b);
  return st;
}

ferry_status ferry_projector_open(ferry_projector **out, ferry_store *store,
                                  const ferry_mapping *mapping, const char *customer,
                                  const ferry_projector_opts *opts, bool allow_mapping_change,
                                  ferry_error *err) {
  ferry_store_tune_process(); /* a fold's memory stays near the store's budget */
  ferry_status st = FERRY_OK;
  *out = NULL;
  if (!ferry_customer_valid(customer))
    return ferry_error_set(err, FERRY_EINVAL, "invalid customer id '%s'", customer);
  ferry_projector *p = calloc(1, sizeof *p);
  if (!p) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  p->store = store;
  p->map = mapping;
  p->fold_batch = opts && opts->fold_batch_events ? opts->fold_batch_events : 10000;
  p->nentities = ferry_mapping_entity_count(mapping);
  p->njoins = ferry_mapping_joins(mapping, &p->joins);
  p->customer = strdup(customer);
  p->id_field = strdup(opts && opts->id_field ? opts->id_field : "id");
  p->ext_field = strdup(opts && opts->external_key_field ? opts->external_key_field : "legacy_key");
  if (!p->customer || !p->id_field || !p->ext_field) {
    st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
    goto done;
  }
  /* ferry sets the external key field itself, and the cloud owns the id
   * field: a mapped field of either name would be overwritten, or clash */
  for (size_t e = 0; e < p->nentities; e++) {
    const char *reserved[2] = {p->ext_field, p->id_field};
    const char *setting[2] = {"cloud.external_key_field", "cloud.id_field"};
    for (int r = 0; r < 2; r++) {
      size_t line = ferry_mapping_entity_field_line(mapping, e, reserved[r]);
      if (!line) continue;
      st = ferry_error_set(err, FERRY_EMAPPING,
                           "%s:%zu: entities.%s.fields.%s: this name is the cloud's %s field "
                           "(%s), which ferry %s; rename the field, or set %s to another name",
                           ferry_mapping_name(mapping), line, ferry_mapping_entity_name(mapping, e),
                           reserved[r], r ? "id" : "external key", setting[r],
                           r ? "reads from the cloud's answers" : "fills in itself", setting[r]);
      goto done;
    }
  }
  if ((st = proj_state_load(p, err))) goto done;
  const char *now = ferry_mapping_hash(mapping);
  if (!allow_mapping_change && p->mapping_hash[0] && strcmp(p->mapping_hash, now) != 0)
    st = ferry_error_set(err, FERRY_EMAPPING_CHANGED,
                         "the mapping changed since %s was projected (projection built with "
                         "%.12s, mapping is now %.12s); run 'ferry replay %s' to rebuild the "
                         "projection with it, then 'ferry plan %s' to review what would change",
                         customer, p->mapping_hash, now, customer, customer);
done:
  if (st) ferry_projector_close(p);
  else *out = p;
  return st;
}

static void *scratch_alloc(void *a, size_t n) { return arena_alloc(a, n, 16); }
static void scratch_free(void *a, void *ptr) { (void)a, (void)ptr; }

ProtobufCAllocator proj_scratch_allocator(arena *a) {
  return (ProtobufCAllocator){scratch_alloc, scratch_free, a};
}

void ferry_projector_close(ferry_projector *p) {
  if (!p) return;
  ferry_wbatch_destroy(p->writing); /* waits: it is being written */
  ferry_bwriter_destroy(p->writer);
  ferry_wbatch_destroy(p->group); /* pending outcomes are dropped, as a crash would */
  arena_free(&p->ev_scratch);
  arena_free(&p->row_scratch);
  free(p->customer);
  free(p->id_field);
  free(p->ext_field);
  free(p->mapping_hash);
  free(p->last_sync_result);
  free(p);
}

ferry_status proj_reconcile(ferry_projector *p, ferry_error *err) {
  ferry_kv_iter *it = NULL;
  ferry_wbatch *b = ferry_wbatch_create(p->store, p->customer);
  if (!b) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  ferry_status st = ferry_kv_iter_open(p->store, FERRY_CF_APPLIED, p->customer, NULL, 0, NULL, 0, &it, err);
  const char *key, *val;
  size_t klen, vlen;
  int r = 0;
  while (!st && (r = ferry_kv_iter_next(it, &key, &klen, &val, &vlen)) == 1) {
    const char *ename, *ekey;
    size_t elen, eklen;
    if (ferry_key_entity_parse(key, klen, &ename, &elen, &ekey, &eklen)) continue;
    char name[FERRY_ENTITY_NAME_MAX + 1], *kk = strndup(ekey, eklen);
    if (!kk) { st = ferry_error_set(err, FERRY_ENOMEM, "out of memory"); break; }
    snprintf(name, sizeof name, "%.*s", (int)elen, ename);
    size_t e = ferry_mapping_entity_find(p->map, name);
    Ferry__V1__DesiredEntity *d = NULL;
    Ferry__V1__AppliedEntity *a = ferry__v1__applied_entity__unpack(NULL, vlen, (const uint8_t *)val);
    if (!(st = proj_desired_get(p, NULL, name, kk, &d, err)) && !d && proj_is_dirty(NULL, a)) {
      if (e == SIZE_MAX) { /* an entity type the mapping no longer has: still delete it */
        ferry_key k;
        ferry_key_dirty(&k, 0, name, kk);
        ferry_wbatch_put(b, FERRY_CF_DIRTY, k.b, k.len, "", 0);
      } else {
        proj_mark_dirty(p, b, e, kk, true);
      }
    }
    if (d) ferry__v1__desired_entity__free_unpacked(d, NULL);
    if (a) ferry__v1__applied_entity__free_unpacked(a, NULL);
    free(kk);
    if (ferry_wbatch_count(b) >= 10000) {
      if ((st = ferry_wbatch_commit(b, false, err))) break;
      ferry_wbatch_destroy(b);
      if (!(b = ferry_wbatch_create(p->store, p->customer))) st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
    }
  }
  if (!st && r < 0) st = ferry_kv_iter_error(it, err);
  ferry_kv_iter_close(it);
  if (!st) {
    p->rebuilding = false;
    p->rebuild_target = 0;
    st = proj_state_put(p, b, err);
  }
  if (!st) st = ferry_wbatch_commit(b, true, err);
  ferry_wbatch_destroy(b);
  return st;
}

/* The families a rebuild drops and folds again. */
static const ferry_cf derived[] = {FERRY_CF_MIRROR, FERRY_CF_INDEX, FERRY_CF_DESIRED,
                                   FERRY_CF_DIRTY};

/* Finishes a rebuild left by a crash (or started just now). */
static ferry_status finish_rebuild(ferry_projector *p, ferry_progress_fn progress, void *arg,
                                   ferry_error *err) {
  ferry_status st = FERRY_OK;
  if (!p->rebuilding) return FERRY_OK;
  /* Before the refold starts, drop from the files what rebuild's range deletes hide: the
   * refold seeks into these ranges for every entity, and each seek would step over all of it
   * (ferry_store_compact_customer). */
  for (size_t i = 0; !st && p->folded_seq == 0 && i < sizeof derived / sizeof *derived; i++)
    st = ferry_store_compact_customer(p->store, derived[i], p->customer, err);
  if (!st) st = proj_fold_to(p, p->rebuild_target, progress, arg, NULL, err);
  if (!st) st = proj_reconcile(p, err);
  return st;
}

static ferry_status rebuild(ferry_projector *p, uint64_t to_seq, bool hold,
                            ferry_progress_fn progress, void *arg, ferry_error *err) {
  ferry_wbatch *b = ferry_wbatch_create(p->store, p->customer);
  if (!b) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  for (size_t i = 0; i < sizeof derived / sizeof *derived; i++)
    ferry_wbatch_delete_range(b, derived[i], NULL, 0, NULL, 0);
  p->folded_seq = 0;
  p->rebuilding = true;
  p->rebuild_target = to_seq;
  p->held = hold;
  p->hold_seq = hold ? to_seq : 0;
  ferry_status st = set_str(&p->mapping_hash, ferry_mapping_hash(p->map))
                        ? ferry_error_set(err, FERRY_ENOMEM, "out of memory")
                        : proj_state_put(p, b, err);
  if (!st) st = ferry_wbatch_commit(b, true, err);
  ferry_wbatch_destroy(b);
  if (!st) st = finish_rebuild(p, progress, arg, err);
  return st;
}

static ferry_status head(ferry_projector *p, uint64_t *h, ferry_error *err) {
  return ferry_store_head_seq(p->store, p->customer, h, err);
}

ferry_status ferry_projector_rewind(ferry_projector *p, uint64_t to_seq, bool hold,
                                    ferry_progress_fn progress, void *arg, ferry_error *err) {
  uint64_t h = 0;
  ferry_status st = head(p, &h, err);
  if (st) return st;
  if (to_seq > h)
    return ferry_error_set(err, FERRY_EINVAL, "--to-seq %llu is past %s's head seq %llu",
                           (unsigned long long)to_seq, p->customer, (unsigned long long)h);
  return rebuild(p, to_seq, hold, progress, arg, err);
}

ferry_status ferry_projector_resume(ferry_projector *p, ferry_error *err) {
  if (!p->held) return FERRY_OK;
  p->held = false;
  p->hold_seq = 0;
  return state_commit(p, true, err);
}

ferry_status ferry_projector_replay(ferry_projector *p, ferry_progress_fn progress, void *arg,
                                    ferry_error *err) {
  uint64_t h = 0;
  ferry_status st = head(p, &h, err);
  if (st) return st;
  if (p->held) h = p->hold_seq; /* a held projection stays where it was put */
  return rebuild(p, h, p->held, progress, arg, err);
}

ferry_status ferry_projector_fold(ferry_projector *p, ferry_progress_fn progress, void *arg,
                                  uint64_t *folded, ferry_error *err) {
  uint64_t h = 0, before = p->folded_seq;
  ferry_status st = finish_rebuild(p, progress, arg, err);
  if (!st) st = head(p, &h, err);
  if (st) return st;
  if (p->held && p->hold_seq < h) h = p->hold_seq;
  if (!p->mapping_hash[0]) { /* first fold: record the mapping it is built with */
    if (set_str(&p->mapping_hash, ferry_mapping_hash(p->map)))
      return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
    if (p->folded_seq >= h && (st = state_commit(p, false, err))) return st;
  }
  st = proj_fold_to(p, h, progress, arg, NULL, err);
  if (folded) *folded = p->folded_seq - before;
  return st;
}

ferry_status ferry_projector_unseen_tables(ferry_projector *p, char ***tables, size_t *n,
                                           ferry_error *err) {
  size_t nt = 0, k = 0;
  const char *const *names = ferry_mapping_tables(p->map, &nt);
  ferry_status st = FERRY_OK;
  *tables = calloc(nt ? nt : 1, sizeof **tables);
  *n = 0;
  if (!*tables) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  for (size_t i = 0; i < nt && !st; i++) {
    ferry_key lo, hi;
    ferry_key_reset(&lo);
    ferry_key_enc16(&lo, names[i], strlen(names[i]));
    hi = lo;
    hi.b[hi.len - 1]++; /* names are [A-Za-z0-9_.]: the last byte never overflows */
    ferry_kv_iter *it = NULL;
    if ((st = ferry_kv_iter_open(p->store, FERRY_CF_MIRROR, p->customer, lo.b, lo.len, hi.b,
                                 hi.len, &it, err)))
      break;
    const char *key, *val;
    size_t klen, vlen;
    int r = ferry_kv_iter_next(it, &key, &klen, &val, &vlen);
    if (r < 0) st = ferry_kv_iter_error(it, err);
    else if (r == 0 && !((*tables)[k++] = strdup(names[i])))
      st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
    ferry_kv_iter_close(it);
  }
  *n = k;
  return st;
}
