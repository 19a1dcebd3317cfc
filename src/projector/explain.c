/*
 * Answers to "why does the cloud say this?": explain (an entity's desired and
 * applied state and the legacy rows it was built from) and history (the
 * audit trail, filtered by entity or by legacy row).
 *
 * explain derives the entity again through a row source that records every
 * row the evaluator reads, so the constituents it lists are exactly those the
 * mapping used, with the version and seq of each.
 */
#include <stdlib.h>
#include <string.h>

#include "common/strmap.h"
#include "ferry/event.h"
#include "ferry/v1/audit.pb-c.h"
#include "ferry/v1/event.pb-c.h"
#include "projector/proj.h"

typedef struct rec_src {
  ferry_row_source inner;
  ferry_projector *p;
  json_t *rows; /* [{table, key, version, seq}] */
  strmap seen;
} rec_src;

static void note_row(rec_src *r, const char *table, const char *key) {
  char buf[FERRY_KEY_CAP];
  int n = snprintf(buf, sizeof buf, "%s%c%s", table, 0, key);
  if (n < 0 || (size_t)n >= sizeof buf) return;
  int added = 0;
  if (!strmap_upsert(&r->seen, buf, (size_t)n, &added) || !added) return;
  json_t *row = NULL;
  Ferry__V1__MirrorRow *mr = NULL;
  if (proj_mirror_row(r->p, NULL, table, key, &row, &mr, NULL) == FERRY_OK && mr)
    json_array_append_new(r->rows, json_pack("{s:s, s:s, s:I, s:I, s:b}", "table", table, "key", key,
                                             "version", (json_int_t)mr->version, "seq",
                                             (json_int_t)mr->seq, "deleted", mr->deleted));
  json_decref(row);
  if (mr) ferry__v1__mirror_row__free_unpacked(mr, NULL);
}

static ferry_status rec_get_row(void *arg, const char *table, const char *key, json_t **row,
                                ferry_error *err) {
  rec_src *r = arg;
  ferry_status st = r->inner.get_row(r->inner.arg, table, key, row, err);
  if (!st && *row) note_row(r, table, key);
  return st;
}

typedef struct rec_each {
  rec_src *r;
  const char *table;
  ferry_row_fn fn;
  void *fnarg;
} rec_each;

static ferry_status rec_visit(void *arg, const char *key, json_t *row) {
  rec_each *e = arg;
  note_row(e->r, e->table, key);
  return e->fn(e->fnarg, key, row);
}

static ferry_status rec_each_row(void *arg, const char *table, const char *column,
                                 const char *value, ferry_row_fn fn, void *fnarg, ferry_error *err) {
  rec_src *r = arg;
  rec_each e = {r, table, fn, fnarg};
  return r->inner.each_row(r->inner.arg, table, column, value, rec_visit, &e, err);
}

static json_t *parse_or_null(const char *text) {
  json_t *v = text && text[0] ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
  return v ? v : json_null();
}

static json_t *seqs_json(const uint64_t *s, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer((json_int_t)s[i]));
  return a;
}

static json_t *desired_json(const Ferry__V1__DesiredEntity *d) {
  if (!d || d->deleted) return json_null();
  char hex[33];
  proj_hex(d->hash.data, d->hash.len < 16 ? d->hash.len : 16, hex);
  json_t *conf = json_array();
  for (size_t i = 0; i < d->n_conflicts; i++) json_array_append_new(conf, json_string(d->conflicts[i]));
  return json_pack("{s:o, s:s, s:s, s:o}", "payload", parse_or_null(d->payload), "hash", hex,
                   "root_key", d->root_key, "conflicting_roots", conf);
}

static json_t *applied_json(const Ferry__V1__AppliedEntity *a) {
  static const char *states[] = {"none", "creating", "created"};
  if (!a) return json_null();
  json_t *o = json_pack("{s:s, s:o, s:o, s:I, s:b}", "state", states[a->state % 3], "cloud_id",
                        parse_or_null(a->cloud_id), "payload", parse_or_null(a->payload),
                        "create_generation", (json_int_t)a->create_generation, "failed", a->failed);
  if (o && a->failed) json_object_set_new(o, "error", json_string(a->error));
  return o;
}

ferry_status ferry_projector_explain(ferry_projector *p, const char *entity, const char *key,
                                     json_t **out, ferry_error *err) {
  Ferry__V1__DesiredEntity *d = NULL;
  Ferry__V1__AppliedEntity *a = NULL;
  rec_src r = {{0}, p, json_array(), {0}};
  strmap_init(&r.seen);
  *out = NULL;
  size_t e = ferry_mapping_entity_find(p->map, entity);
  ferry_status st = proj_desired_get(p, NULL, entity, key, &d, err);
  if (!st) st = proj_applied_get(p, NULL, entity, key, &a, err);
  if (st) goto done;
  if (!d && !a) {
    st = ferry_error_set(err, FERRY_ENOTFOUND, "%s has no entity %s/%s%s", p->customer, entity, key,
                         e == SIZE_MAX ? " (and the mapping has no entity type of that name)" : "");
    goto done;
  }
  if (d && !d->deleted && e != SIZE_MAX) { /* the constituents, as the mapping reads them */
    proj_src sc = {p, NULL, NULL};
    proj_row_source(&sc, &r.inner);
    ferry_row_source src = {&r, rec_get_row, rec_each_row};
    json_t *root = NULL;
    if (!(st = rec_get_row(&r, ferry_mapping_entity_source(p->map, e), d->root_key, &root, err)) && root) {
      int passes = 0;
      json_t *payload = NULL;
      st = ferry_mapping_derive(p->map, e, d->root_key, root, &src, &passes, NULL, &payload, err);
      json_decref(payload);
    }
    json_decref(root);
    if (st) goto done;
  }
  *out = json_pack("{s:s, s:s, s:o, s:o, s:o, s:o}", "entity", entity, "key", key, "desired",
                   desired_json(d), "applied", applied_json(a), "rows", json_incref(r.rows),
                   "pending_seqs", d ? seqs_json(d->cause_seqs, d->n_cause_seqs) : json_array());
  if (*out) json_object_set_new(*out, "dirty", json_boolean(proj_is_dirty(d, a)));
  if (!*out) st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
done:
  json_decref(r.rows);
  strmap_free(&r.seen, NULL);
  if (d) ferry__v1__desired_entity__free_unpacked(d, NULL);
  if (a) ferry__v1__applied_entity__free_unpacked(a, NULL);
  return st;
}

/* The seqs of every event on legacy row "TABLE/KEY" (the table has no '/'). */
static ferry_status row_seqs(ferry_projector *p, const char *row, strmap *out, ferry_error *err) {
  const char *slash = strchr(row, '/');
  if (!slash) return ferry_error_set(err, FERRY_EINVAL, "--row: expected TABLE/KEY, got '%s'", row);
  size_t tlen = (size_t)(slash - row);
  ferry_log_iter *it = NULL;
  ferry_status st = ferry_log_iter_open(p->store, p->customer, 1, &it, err);
  uint64_t seq;
  const uint8_t *ev;
  size_t len;
  int r = 0;
  while (!st && (r = ferry_log_iter_next(it, &seq, &ev, &len)) == 1) {
    Ferry__V1__Event *e = ferry__v1__event__unpack(NULL, len, ev);
    if (e && e->change && strlen(e->change->table) == tlen &&
        memcmp(e->change->table, row, tlen) == 0 && strcmp(e->change->key, slash + 1) == 0) {
      uint8_t k[8];
      ferry_be64_put(k, seq);
      if (!strmap_upsert(out, k, 8, NULL)) st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
    }
    if (e) ferry__v1__event__free_unpacked(e, NULL);
  }
  if (!st && r < 0) st = ferry_log_iter_error(it, err);
  ferry_log_iter_close(it);
  return st;
}

static json_t *audit_json(const Ferry__V1__AuditRecord *a) {
  char when[32];
  ferry_time_format(a->at_us, when);
  json_t *fields = json_array();
  for (size_t i = 0; i < a->n_fields_changed; i++)
    json_array_append_new(fields, json_string(a->fields_changed[i]));
  json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:o, s:s, s:s, s:i, s:s, s:o, s:i, s:o, s:s, s:f}",
                        "audit_seq", (json_int_t)a->audit_seq, "at", when, "entity", a->entity,
                        "key", a->entity_key, "cloud_id", parse_or_null(a->cloud_id), "method",
                        a->method, "path", a->path, "status", (int)a->http_status, "outcome",
                        a->outcome, "fields", fields, "attempts", (int)a->attempts, "seqs",
                        seqs_json(a->cause_seqs, a->n_cause_seqs), "mapping_hash",
                        a->mapping_hash, "latency_ms", a->latency_us / 1000.0);
  if (o && a->error && a->error[0]) json_object_set_new(o, "error", json_string(a->error));
  return o;
}

static bool matches_row(const Ferry__V1__AuditRecord *a, const strmap *seqs) {
  for (size_t i = 0; i < a->n_cause_seqs; i++) {
    uint8_t k[8];
    ferry_be64_put(k, a->cause_seqs[i]);
    if (strmap_get(seqs, k, 8)) return true;
  }
  return false;
}

ferry_status ferry_projector_history(ferry_projector *p, const char *entity_filter,
                                     const char *row_filter,
                                     int (*fn)(void *arg, json_t *record), void *arg,
                                     ferry_error *err) {
  strmap seqs;
  ferry_kv_iter *it = NULL;
  strmap_init(&seqs);
  ferry_status st = row_filter ? row_seqs(p, row_filter, &seqs, err) : FERRY_OK;
  if (!st) st = ferry_kv_iter_open(p->store, FERRY_CF_AUDIT, p->customer, NULL, 0, NULL, 0, &it, err);
  const char *key, *val;
  size_t klen, vlen;
  int r = 0, stop = 0;
  while (!st && !stop && (r = ferry_kv_iter_next(it, &key, &klen, &val, &vlen)) == 1) {
    Ferry__V1__AuditRecord *a = ferry__v1__audit_record__unpack(NULL, vlen, (const uint8_t *)val);
    if (!a) { st = ferry_error_set(err, FERRY_ECORRUPT, "an audit record does not decode"); break; }
    bool keep = true;
    if (entity_filter) {
      size_t el = strlen(a->entity);
      keep = strncmp(entity_filter, a->entity, el) == 0 && entity_filter[el] == '/' &&
             strcmp(entity_filter + el + 1, a->entity_key) == 0;
    }
    if (keep && row_filter) keep = matches_row(a, &seqs);
    if (keep) {
      json_t *o = audit_json(a);
      if (!o) st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
      else stop = fn(arg, o);
      json_decref(o);
    }
    ferry__v1__audit_record__free_unpacked(a, NULL);
  }
  if (!st && r < 0) st = ferry_kv_iter_error(it, err);
  ferry_kv_iter_close(it);
  strmap_free(&seqs, NULL);
  return st;
}
