/*
 * The applier's outcomes: the create intent before a first attempt, and one
 * write batch per finished call holding the applied state (cloud id and the
 * payload the cloud now has), the audit record, the dirty mark, the failed
 * marker, and dirty marks for the entities that reference this one when its
 * cloud id appeared or went away.
 *
 * Failed entities carry a marker ('F' entity key in the index family) so that
 * status and retry-failed cost what the failures cost, not the customer.
 */
#include <stdlib.h>
#include <string.h>

#include "ferry/event.h"
#include "ferry/v1/audit.pb-c.h"
#include "projector/proj.h"

static void failed_key(ferry_key *k, const char *entity, const char *ekey) {
  ferry_key_reset(k);
  ferry_key_byte(k, 'F');
  ferry_key_enc16(k, entity, strlen(entity));
  ferry_key_raw(k, ekey, strlen(ekey));
}

/* Keeps a call's state in step with the applied record just written. */
static ferry_status state_applied(const ferry_call *c, const Ferry__V1__AppliedEntity *n) {
  proj_call_state *cs = c->state;
  if (!cs) return FERRY_OK;
  uint8_t stackbuf[4096];
  size_t len = protobuf_c_message_get_packed_size(&n->base);
  uint8_t *buf = len <= sizeof stackbuf ? stackbuf : malloc(len);
  if (!buf) return FERRY_ENOMEM;
  protobuf_c_message_pack(&n->base, buf);
  Ferry__V1__AppliedEntity *copy = ferry__v1__applied_entity__unpack(NULL, len, buf);
  if (buf != stackbuf) free(buf);
  if (!copy) return FERRY_ENOMEM;
  if (cs->a) ferry__v1__applied_entity__free_unpacked(cs->a, NULL);
  cs->a = copy;
  return FERRY_OK;
}

static void records_free(bool owned, Ferry__V1__DesiredEntity *d, Ferry__V1__AppliedEntity *a) {
  if (!owned) return;
  if (d) ferry__v1__desired_entity__free_unpacked(d, NULL);
  if (a) ferry__v1__applied_entity__free_unpacked(a, NULL);
}

ferry_status ferry_projector_begin_call(ferry_projector *p, const ferry_call *c,
                                        uint64_t *generation, bool *resume, ferry_error *err) {
  *generation = 0;
  *resume = false;
  if (c->kind == FERRY_CALL_CREATE) return ferry_projector_begin_create(p, c, generation, resume, err);
  if ((c->kind != FERRY_CALL_PATCH && c->kind != FERRY_CALL_DELETE) || !c->cloud_id) return FERRY_OK;
  Ferry__V1__DesiredEntity *d = NULL;
  Ferry__V1__AppliedEntity *a = NULL;
  bool owned = false;
  ferry_status st = proj_call_records(p, c, &d, &a, &owned, err);
  if (st || !a || a->uncertain) goto done;
  a->uncertain = true; /* until the outcome is recorded: see proj_is_dirty */
  ferry_wbatch *b = proj_writer(p);
  if (!b) {
    st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
    goto done;
  }
  ferry_key k;
  ferry_key_entity(&k, c->entity, c->key);
  proj_put_pb(b, FERRY_CF_APPLIED, &k, &a->base);
  st = proj_written(p, b, FERRY_OK, err);
done:
  records_free(owned, d, a);
  return st;
}

ferry_status ferry_projector_begin_create(ferry_projector *p, const ferry_call *c,
                                          uint64_t *generation, bool *resume, ferry_error *err) {
  Ferry__V1__DesiredEntity *d = NULL;
  Ferry__V1__AppliedEntity *a = NULL;
  bool owned = false;
  ferry_status st = proj_call_records(p, c, &d, &a, &owned, err);
  if (st) return st;
  *resume = a && a->state == FERRY__V1__ENTITY_STATE__ENTITY_STATE_CREATING;
  if (*resume) { /* an earlier attempt of this generation may have reached the cloud */
    *generation = a->create_generation;
    records_free(owned, d, a);
    return FERRY_OK;
  }
  Ferry__V1__AppliedEntity n = FERRY__V1__APPLIED_ENTITY__INIT;
  if (a) n = *a; /* keeps failure details until the outcome replaces them */
  n.state = FERRY__V1__ENTITY_STATE__ENTITY_STATE_CREATING;
  n.create_generation = (a ? a->create_generation : 0) + 1;
  n.endpoint = c->endpoint;
  n.cloud_id = "";
  n.payload = "";
  n.updated_at_us = ferry_time_now_us();
  *generation = n.create_generation;
  /* restored from a backup: the cloud may hold a record made after the backup */
  *resume = p->restored;
  ferry_wbatch *b = proj_writer(p);
  if (!b) st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  if (!st) {
    ferry_key k;
    ferry_key_entity(&k, c->entity, c->key);
    proj_put_pb(b, FERRY_CF_APPLIED, &k, &n.base);
    /* not synced here: the applier stores the intents of a group of creates
     * and syncs the WAL once (ferry_projector_sync_wal) before any is sent */
    st = proj_written(p, b, FERRY_OK, err);
  }
  /* n points into a, which the state may be about to replace: copy first */
  if (!st && state_applied(c, &n)) st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  records_free(owned, d, a);
  return st;
}

static const char *outcome_name(ferry_outcome o) {
  switch (o) {
  case FERRY_OUTCOME_OK: return "ok";
  case FERRY_OUTCOME_ADOPTED: return "adopted";
  case FERRY_OUTCOME_GONE: return "gone";
  case FERRY_OUTCOME_FAILED: return "failed";
  case FERRY_OUTCOME_UNKNOWN: return "unknown";
  }
  return "unknown";
}

static void put_audit(ferry_projector *p, ferry_wbatch *b, const ferry_call *c,
                      const ferry_call_result *r, const char *cloud_id) {
  Ferry__V1__AuditRecord a = FERRY__V1__AUDIT_RECORD__INIT;
  a.audit_seq = ++p->audit_seq;
  a.at_us = ferry_time_now_us();
  a.customer = p->customer;
  a.entity = c->entity;
  a.entity_key = c->key;
  a.cloud_id = (char *)(cloud_id ? cloud_id : "");
  a.method = (char *)(r->method ? r->method : "");
  a.path = (char *)(r->path ? r->path : "");
  a.http_status = r->http_status;
  a.fields_changed = c->fields;
  a.n_fields_changed = c->kind == FERRY_CALL_DELETE ? 0 : c->nfields;
  a.attempts = r->attempts;
  a.mapping_hash = p->mapping_hash;
  a.cause_seqs = c->seqs;
  a.n_cause_seqs = c->nseqs;
  a.outcome = (char *)outcome_name(r->outcome);
  a.error = (char *)(r->error ? r->error : "");
  a.latency_us = r->latency_us;
  uint8_t key[8];
  ferry_be64_put(key, a.audit_seq);
  ferry_key k;
  ferry_key_reset(&k);
  ferry_key_raw(&k, key, 8);
  proj_put_pb(b, FERRY_CF_AUDIT, &k, &a.base);
}

/* The applied record after a successful call. */
static ferry_status apply_success(ferry_projector *p, const ferry_call *c, const ferry_call_result *r,
                                  Ferry__V1__AppliedEntity *n, const Ferry__V1__DesiredEntity *d,
                                  char **payload_text, bool *id_changed) {
  bool gone = r->outcome == FERRY_OUTCOME_GONE;
  *id_changed = false;
  if (c->kind == FERRY_CALL_DELETE || (c->kind == FERRY_CALL_PATCH && gone)) {
    n->state = FERRY__V1__ENTITY_STATE__ENTITY_STATE_NONE;
    n->cloud_id = "";
    n->payload = "";
    n->desired_hash.len = 0;
    *id_changed = true;
    return FERRY_OK;
  }
  if (c->kind == FERRY_CALL_CREATE) {
    n->state = FERRY__V1__ENTITY_STATE__ENTITY_STATE_CREATED;
    n->cloud_id = (char *)(r->cloud_id ? r->cloud_id : "null");
    *id_changed = true;
  }
  if (c->resolved) {
    /* the same canonical form as desired payloads (one serialiser for stored state) */
    if (!(*payload_text = ferry_value_canonical(c->resolved))) return FERRY_ENOMEM;
    n->payload = *payload_text;
  }
  if (d && !d->deleted) n->desired_hash = d->hash;
  (void)p;
  return FERRY_OK;
}

ferry_status ferry_projector_record(ferry_projector *p, const ferry_call *c,
                                    const ferry_call_result *r, ferry_error *err) {
  if (r->outcome == FERRY_OUTCOME_UNKNOWN || c->kind == FERRY_CALL_WAIT) return FERRY_OK;
  Ferry__V1__AppliedEntity *a = NULL;
  Ferry__V1__DesiredEntity *d = NULL;
  char *payload_text = NULL;
  bool id_changed = false, owned = false;
  size_t e = ferry_mapping_entity_find(p->map, c->entity);
  ferry_wbatch *b = NULL;
  ferry_status st = proj_call_records(p, c, &d, &a, &owned, err);
  if (st) goto done;
  if (!(b = proj_writer(p))) {
    st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
    goto done;
  }
  Ferry__V1__AppliedEntity n = FERRY__V1__APPLIED_ENTITY__INIT;
  if (a) n = *a;
  n.endpoint = c->endpoint;
  n.updated_at_us = ferry_time_now_us();
  n.uncertain = false; /* the outcome is known now */
  ferry_key k, fk;
  ferry_key_entity(&k, c->entity, c->key);
  failed_key(&fk, c->entity, c->key);
  if (r->outcome == FERRY_OUTCOME_FAILED) {
    n.failed = true;
    n.error = (char *)(r->error ? r->error : "");
    n.error_status = r->http_status;
    if (d) n.failed_hash = d->hash;
    ferry_wbatch_put(b, FERRY_CF_INDEX, fk.b, fk.len, "", 0);
  } else {
    if ((st = apply_success(p, c, r, &n, d, &payload_text, &id_changed))) {
      ferry_error_set(err, st, "out of memory recording %s/%s", c->entity, c->key);
      goto done;
    }
    n.failed = false;
    n.error = "";
    n.error_status = 0;
    n.failed_hash.len = 0;
    if (a && a->failed) ferry_wbatch_delete(b, FERRY_CF_INDEX, fk.b, fk.len);
  }
  proj_put_pb(b, FERRY_CF_APPLIED, &k, &n.base);
  bool dirty = r->outcome != FERRY_OUTCOME_FAILED && proj_is_dirty(d, &n);
  if (d && d->deleted && !dirty) {
    ferry_wbatch_delete(b, FERRY_CF_DESIRED, k.b, k.len); /* tombstone served its purpose */
  } else if (d && r->outcome != FERRY_OUTCOME_FAILED && !dirty && d->n_cause_seqs) {
    Ferry__V1__DesiredEntity nd = *d; /* applied: its causes are in the audit record now */
    nd.n_cause_seqs = 0;
    nd.causes_dropped = 0;
    proj_put_pb(b, FERRY_CF_DESIRED, &k, &nd.base);
  }
  ferry_key dk;
  ferry_key_dirty(&dk, e == SIZE_MAX ? 0 : (unsigned)e, c->entity, c->key);
  if (dirty) ferry_wbatch_put(b, FERRY_CF_DIRTY, dk.b, dk.len, "", 0);
  else {
    ferry_wbatch_delete(b, FERRY_CF_DIRTY, dk.b, dk.len);
    p->cleared++;
  }
  if (id_changed && e != SIZE_MAX && (st = proj_mark_referrers(p, b, e, c->key, err))) goto done;
  if (c->kind != FERRY_CALL_NONE)
    put_audit(p, b, c, r, c->kind == FERRY_CALL_CREATE ? n.cloud_id : c->cloud_id);
  if (!p->grouping) st = proj_state_put(p, b, err); /* the audit counter; a group's flush puts it */
done:
  if (b) st = proj_written(p, b, st, err);
  if (st) proj_state_load(p, NULL);
  free(payload_text);
  records_free(owned, d, a);
  return st;
}

/* After many applied calls the dirty range is mostly deletion markers, which
 * every plan walk steps over until compaction drops them (measured: a
 * one-change plan at 100k entities took 8 ms right after the initial sync,
 * against 2.5 ms at 10k). Compacting the customer's dirty range once many
 * marks were cleared brings it back to the size of what is pending. The
 * count runs across syncs: ferryd keeps a customer's projector open, and
 * its many one-change syncs would otherwise leave every marker in the
 * memtable until it fills (2 MiB: tens of thousands of them, stepped over
 * by every walk). */
#define TIDY_AFTER 256

static ferry_status tidy(ferry_projector *p, ferry_error *err) {
  if (p->cleared < TIDY_AFTER) return FERRY_OK;
  p->cleared = 0;
  return ferry_store_compact_customer(p->store, FERRY_CF_DIRTY, p->customer, err);
}

ferry_status ferry_projector_sync_wal(ferry_projector *p, ferry_error *err) {
  ferry_status st = ferry_store_sync_wal(p->store, err);
  return st ? st : tidy(p, err);
}

/* ------------------------------------------------------------ grouping --- */

ferry_wbatch *proj_writer(ferry_projector *p) {
  if (!p->grouping) return ferry_wbatch_create(p->store, p->customer);
  if (!p->group) p->group = ferry_wbatch_create(p->store, p->customer);
  return p->group;
}

/* Drops the group's pending writes (and the audit numbers they took). */
static void group_drop(ferry_projector *p) {
  ferry_wbatch_destroy(p->group);
  p->group = NULL;
  proj_state_load(p, NULL);
}

ferry_status proj_written(ferry_projector *p, ferry_wbatch *b, ferry_status st, ferry_error *err) {
  if (b == p->group) {
    if (st) group_drop(p);
    return st;
  }
  if (!st) st = ferry_wbatch_commit(b, false, err);
  ferry_wbatch_destroy(b);
  return st;
}

ferry_status ferry_projector_group_begin(ferry_projector *p, ferry_error *err) {
  if (p->grouping) return ferry_error_set(err, FERRY_EINVAL, "a write group is already open");
  p->grouping = true;
  return FERRY_OK;
}

/* Waits for the group flush_start handed to the writer. If it failed, its
 * outcomes are lost (their entities stay dirty, as after a crash), and so
 * is the group collected since, which may build on them. */
static ferry_status wait_writing(ferry_projector *p, ferry_error *err) {
  if (!p->writing) return FERRY_OK;
  ferry_status st = ferry_wbatch_commit_wait(p->writing, err);
  ferry_wbatch_destroy(p->writing);
  p->writing = NULL;
  if (st) group_drop(p);
  return st;
}

ferry_status ferry_projector_flush(ferry_projector *p, bool sync, ferry_error *err) {
  ferry_status st = wait_writing(p, err);
  if (st) return st;
  if (p->group) {
    if (!(st = proj_state_put(p, p->group, err))) st = ferry_wbatch_commit(p->group, sync, err);
    if (st) {
      group_drop(p);
      return st;
    }
    ferry_wbatch_destroy(p->group);
    p->group = NULL;
  } else if (sync) {
    st = ferry_store_sync_wal(p->store, err);
  }
  return st;
}

ferry_status ferry_projector_flush_start(ferry_projector *p, bool sync, ferry_error *err) {
  ferry_status st = wait_writing(p, err);
  if (st) return st;
  if (!p->group) return sync ? ferry_store_sync_wal(p->store, err) : FERRY_OK; /* as flush does */
  if (!p->writer && !(p->writer = ferry_bwriter_create()))
    st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  if (!st && !(st = proj_state_put(p, p->group, err)))
    st = ferry_bwriter_commit_start(p->writer, p->group, sync, err);
  if (st) {
    group_drop(p);
    return st;
  }
  p->writing = p->group;
  p->group = NULL;
  return FERRY_OK;
}

ferry_status ferry_projector_flush_poll(ferry_projector *p, bool *busy, ferry_error *err) {
  *busy = p->writing && !ferry_wbatch_commit_done(p->writing);
  return *busy ? FERRY_OK : wait_writing(p, err);
}

ferry_status ferry_projector_group_end(ferry_projector *p, ferry_error *err) {
  if (!p->grouping) return FERRY_OK;
  ferry_status st = ferry_projector_flush(p, false, err);
  p->grouping = false;
  return st ? st : tidy(p, err);
}

size_t ferry_projector_pending(const ferry_projector *p) {
  return (p->group ? ferry_wbatch_count(p->group) : 0) +
         (p->writing ? ferry_wbatch_count(p->writing) : 0);
}

typedef struct retry_ctx {
  ferry_projector *p;
  ferry_wbatch *b;
  uint64_t n;
} retry_ctx;

static ferry_status failed_scan(ferry_projector *p, ferry_status (*fn)(void *, const char *, size_t, const char *, size_t), void *arg, ferry_error *err) {
  ferry_kv_iter *it = NULL;
  const char lo[1] = {'F'}, hi[1] = {'G'};
  ferry_status st = ferry_kv_iter_open(p->store, FERRY_CF_INDEX, p->customer, lo, 1, hi, 1, &it, err);
  const char *key, *val;
  size_t klen, vlen;
  int r = 0;
  while (!st && (r = ferry_kv_iter_next(it, &key, &klen, &val, &vlen)) == 1) {
    const char *ename, *ekey;
    size_t elen, eklen;
    if (ferry_key_entity_parse(key + 1, klen - 1, &ename, &elen, &ekey, &eklen)) continue;
    st = fn(arg, ename, elen, ekey, eklen);
  }
  if (!st && r < 0) st = ferry_kv_iter_error(it, err);
  ferry_kv_iter_close(it);
  return st;
}

static ferry_status retry_one(void *arg, const char *ename, size_t elen, const char *ekey, size_t eklen) {
  retry_ctx *r = arg;
  char *name = strndup(ename, elen), *key = strndup(ekey, eklen);
  ferry_status st = name && key ? FERRY_OK : FERRY_ENOMEM;
  size_t e = st ? SIZE_MAX : ferry_mapping_entity_find(r->p->map, name);
  if (!st) {
    ferry_key dk;
    ferry_key_dirty(&dk, e == SIZE_MAX ? 0 : (unsigned)e, name, key);
    ferry_wbatch_put(r->b, FERRY_CF_DIRTY, dk.b, dk.len, "", 0);
    /* forget which hash failed, so the dirty mark is not judged clean */
    Ferry__V1__AppliedEntity *a = NULL;
    if (!proj_applied_get(r->p, NULL, name, key, &a, NULL) && a) {
      a->failed_hash.len = 0;
      ferry_key k;
      ferry_key_entity(&k, name, key);
      proj_put_pb(r->b, FERRY_CF_APPLIED, &k, &a->base);
      ferry__v1__applied_entity__free_unpacked(a, NULL);
    }
    r->n++;
  }
  free(name);
  free(key);
  return st;
}

ferry_status ferry_projector_retry_failed(ferry_projector *p, uint64_t *n, ferry_error *err) {
  retry_ctx r = {p, ferry_wbatch_create(p->store, p->customer), 0};
  if (!r.b) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  ferry_status st = failed_scan(p, retry_one, &r, err);
  if (!st) st = ferry_wbatch_commit(r.b, true, err);
  ferry_wbatch_destroy(r.b);
  if (n) *n = r.n;
  return st;
}

static ferry_status count_one(void *arg, const char *a, size_t b, const char *c, size_t d) {
  (void)a, (void)b, (void)c, (void)d;
  (*(uint64_t *)arg)++;
  return FERRY_OK;
}

ferry_status ferry_projector_note_sync(ferry_projector *p, const char *result, bool clean,
                                       ferry_error *err) {
  char *s = strdup(result ? result : "");
  if (!s) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  free(p->last_sync_result);
  p->last_sync_result = s;
  if (clean && p->restored) { /* no entity left failed either (a retry could create it) */
    uint64_t failed = 0;
    ferry_status st = failed_scan(p, count_one, &failed, err);
    if (st) return st;
    if (failed == 0) p->restored = false;
  }
  p->last_sync_us = ferry_time_now_us();
  ferry_wbatch *b = ferry_wbatch_create(p->store, p->customer);
  if (!b) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  ferry_status st = proj_state_put(p, b, err);
  if (!st) st = ferry_wbatch_commit(b, true, err);
  ferry_wbatch_destroy(b);
  return st;
}

ferry_status ferry_projector_info(ferry_projector *p, ferry_projection_info *info, ferry_error *err) {
  memset(info, 0, sizeof *info);
  ferry_status st = ferry_store_head_seq(p->store, p->customer, &info->head_seq, err);
  if (st) return st;
  info->folded_seq = p->folded_seq;
  info->held = p->held;
  info->hold_seq = p->hold_seq;
  snprintf(info->mapping_hash, sizeof info->mapping_hash, "%s", p->mapping_hash);
  info->mapping_changed = p->mapping_hash[0] && strcmp(p->mapping_hash, ferry_mapping_hash(p->map)) != 0;
  info->last_sync_us = p->last_sync_us;
  snprintf(info->last_sync_result, sizeof info->last_sync_result, "%s", p->last_sync_result);
  info->restored = p->restored;
  if ((st = failed_scan(p, count_one, &info->failed, err))) return st;
  ferry_kv_iter *it = NULL;
  if ((st = ferry_kv_iter_open(p->store, FERRY_CF_DIRTY, p->customer, NULL, 0, NULL, 0, &it, err)))
    return st;
  const char *key, *val;
  size_t klen, vlen;
  while (ferry_kv_iter_next(it, &key, &klen, &val, &vlen) == 1) info->dirty++;
  st = ferry_kv_iter_error(it, err);
  ferry_kv_iter_close(it);
  return st;
}

typedef struct failed_ctx {
  ferry_projector *p;
  int (*fn)(void *, const char *, const char *, int, const char *);
  void *arg;
  int stop;
} failed_ctx;

static ferry_status failed_one(void *arg, const char *ename, size_t elen, const char *ekey, size_t eklen) {
  failed_ctx *f = arg;
  if (f->stop) return FERRY_OK;
  char *name = strndup(ename, elen), *key = strndup(ekey, eklen);
  Ferry__V1__AppliedEntity *a = NULL;
  ferry_status st = name && key ? proj_applied_get(f->p, NULL, name, key, &a, NULL) : FERRY_ENOMEM;
  if (!st && a) f->stop = f->fn(f->arg, name, key, a->error_status, a->error);
  if (a) ferry__v1__applied_entity__free_unpacked(a, NULL);
  free(name);
  free(key);
  return st;
}

ferry_status ferry_projector_failed(ferry_projector *p,
                                    int (*fn)(void *arg, const char *entity, const char *key,
                                              int http_status, const char *error),
                                    void *arg, ferry_error *err) {
  failed_ctx f = {p, fn, arg, 0};
  return failed_scan(p, failed_one, &f, err);
}
