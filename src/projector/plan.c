/*
 * Plans: what call turns an entity's cloud state into its desired state.
 *
 * Creates and patches run in ascending rank (referenced types first), deletes
 * in descending rank, so a record exists before anything points at it, and a
 * patch that clears a reference runs before the delete of its target. The
 * dirty family is keyed by rank, so each phase is one prefix scan.
 * References resolve to the target's cloud id (with the JSON type the cloud
 * gave it) when the target should exist and exists in the cloud; to null
 * when it should not exist; and otherwise the entity waits (a sync) or shows
 * the marker (a dry-run plan, where the target's create is part of the plan).
 */
#include <stdlib.h>
#include <string.h>

#include "ferry/json.h"
#include "projector/proj.h"

void ferry_call_free(ferry_call *c) {
  if (!c) return;
  free(c->entity);
  free(c->key);
  free(c->endpoint);
  free(c->cloud_id);
  json_decref(c->body);
  json_decref(c->resolved);
  for (size_t i = 0; i < c->nfields; i++) free(c->fields[i]);
  free(c->fields);
  free(c->seqs);
  free(c->external_key);
  free(c->waits_for);
  proj_call_state_free(c->state);
  free(c);
}

void proj_call_state_free(void *state) {
  proj_call_state *cs = state;
  if (!cs) return;
  if (cs->d) ferry__v1__desired_entity__free_unpacked(cs->d, NULL);
  if (cs->a) ferry__v1__applied_entity__free_unpacked(cs->a, NULL);
  free(cs);
}

ferry_status proj_call_records(ferry_projector *p, const ferry_call *c, Ferry__V1__DesiredEntity **d,
                               Ferry__V1__AppliedEntity **a, bool *owned, ferry_error *err) {
  const proj_call_state *cs = c->state;
  *d = NULL;
  *a = NULL;
  *owned = !cs;
  if (cs) {
    *d = cs->d;
    *a = cs->a;
    return FERRY_OK;
  }
  ferry_status st = proj_desired_get(p, NULL, c->entity, c->key, d, err);
  if (!st) st = proj_applied_get(p, NULL, c->entity, c->key, a, err);
  if (st && *d) {
    ferry__v1__desired_entity__free_unpacked(*d, NULL);
    *d = NULL;
  }
  return st;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

ferry_call *ferry_call_dup(const ferry_call *c) {
  ferry_call *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  *d = *c;
  d->entity = dup_or_null(c->entity);
  d->key = dup_or_null(c->key);
  d->endpoint = dup_or_null(c->endpoint);
  d->cloud_id = dup_or_null(c->cloud_id);
  d->external_key = dup_or_null(c->external_key);
  d->waits_for = dup_or_null(c->waits_for);
  d->state = NULL; /* a copy reads the records again */
  d->body = c->body ? json_deep_copy(c->body) : NULL;
  d->resolved = c->resolved ? json_deep_copy(c->resolved) : NULL;
  d->fields = c->nfields ? calloc(c->nfields, sizeof *d->fields) : NULL;
  d->seqs = c->nseqs ? malloc(c->nseqs * sizeof *d->seqs) : NULL;
  bool ok = d->entity && d->key && (!c->endpoint || d->endpoint) && (!c->cloud_id || d->cloud_id) &&
            (!c->external_key || d->external_key) && (!c->waits_for || d->waits_for) &&
            (!c->body || d->body) && (!c->resolved || d->resolved) && (!c->nfields || d->fields) &&
            (!c->nseqs || d->seqs);
  for (size_t i = 0; ok && i < c->nfields; i++) ok = (d->fields[i] = strdup(c->fields[i])) != NULL;
  if (ok && c->nseqs) memcpy(d->seqs, c->seqs, c->nseqs * sizeof *d->seqs);
  if (!ok) {
    if (!d->fields) d->nfields = 0;
    ferry_call_free(d);
    return NULL;
  }
  return d;
}

typedef struct resolve_ctx {
  ferry_projector *p;
  bool dry_run;
  char *waits_for; /* the first target that is not in the cloud yet */
} resolve_ctx;

static ferry_status resolve_ref(void *arg, const char *entity, const char *key, json_t **id) {
  resolve_ctx *r = arg;
  Ferry__V1__DesiredEntity *d = NULL;
  Ferry__V1__AppliedEntity *a = NULL;
  ferry_error err;
  *id = NULL;
  ferry_status st = proj_desired_get(r->p, NULL, entity, key, &d, &err);
  if (!st && d && !d->deleted) st = proj_applied_get(r->p, NULL, entity, key, &a, &err);
  if (st || !d || d->deleted) goto done; /* should not exist: null */
  if (a && a->state == FERRY__V1__ENTITY_STATE__ENTITY_STATE_CREATED) {
    *id = json_loads(a->cloud_id, JSON_DECODE_ANY, NULL);
  } else if (r->dry_run && !(a && a->failed)) {
    *id = ferry_payload_ref_new(entity, key); /* created earlier in the same plan */
  } else if (!r->waits_for) {
    size_t n = strlen(entity) + strlen(key) + 2;
    if ((r->waits_for = malloc(n))) snprintf(r->waits_for, n, "%s/%s", entity, key);
  }
done:
  if (d) ferry__v1__desired_entity__free_unpacked(d, NULL);
  if (a) ferry__v1__applied_entity__free_unpacked(a, NULL);
  return st;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int values_differ(const json_t *a, const json_t *b) {
  if (!a || !b) return a != b;
  return !ferry_value_equal(a, b);
}

/* Fills the changed fields of c (PATCH) or all of them (CREATE). */
static ferry_status diff_fields(ferry_call *c, const json_t *applied) {
  const char *k;
  json_t *v;
  size_t n = 0, cap = json_object_size(c->resolved) + (applied ? json_object_size(applied) : 0);
  c->fields = calloc(cap ? cap : 1, sizeof *c->fields);
  /* everything is sent: the body is the resolved payload itself */
  c->body = applied ? json_object() : json_incref(c->resolved);
  if (!c->fields || !c->body) return FERRY_ENOMEM;
  json_object_foreach(c->resolved, k, v) {
    if (applied && !values_differ(v, json_object_get(applied, k))) continue;
    if (!(c->fields[n++] = strdup(k)) || (applied && json_object_set(c->body, k, v)))
      return FERRY_ENOMEM;
  }
  if (applied) /* fields the mapping no longer has: cleared */
    json_object_foreach((json_t *)applied, k, v) {
      if (json_object_get(c->resolved, k) || strcmp(k, "$id") == 0) continue;
      if (!(c->fields[n++] = strdup(k)) || json_object_set_new(c->body, k, json_null()))
        return FERRY_ENOMEM;
    }
  c->nfields = n;
  qsort(c->fields, n, sizeof *c->fields, cmp_str);
  return FERRY_OK;
}

static ferry_status plan_desired(ferry_projector *p, ferry_call *c, Ferry__V1__DesiredEntity *d,
                                 Ferry__V1__AppliedEntity *a, bool dry_run, ferry_error *err) {
  ferry_status st = FERRY_OK;
  resolve_ctx r = {p, dry_run, NULL};
  json_t *payload = json_loads(d->payload, JSON_DECODE_ANY, NULL), *applied = NULL;
  if (!payload) return ferry_error_set(err, FERRY_ECORRUPT, "desired %s/%s does not decode", c->entity, c->key);
  if ((st = ferry_payload_resolve(payload, resolve_ref, &r, &c->resolved))) goto done;
  if (r.waits_for) {
    c->kind = FERRY_CALL_WAIT;
    c->waits_for = r.waits_for;
    r.waits_for = NULL;
    goto done;
  }
  if (json_object_set_new(c->resolved, p->ext_field, json_string(c->external_key))) {
    st = FERRY_ENOMEM;
    goto done;
  }
  bool created = a && a->state == FERRY__V1__ENTITY_STATE__ENTITY_STATE_CREATED;
  if (created && !(applied = json_loads(a->payload, JSON_DECODE_ANY, NULL))) {
    st = ferry_error_set(err, FERRY_ECORRUPT, "applied %s/%s does not decode", c->entity, c->key);
    goto done;
  }
  /* an uncertain entity (an earlier call may or may not have landed) gets all fields */
  if ((st = diff_fields(c, created && !a->uncertain ? applied : NULL))) goto done;
  if (created) {
    c->kind = c->nfields ? FERRY_CALL_PATCH : FERRY_CALL_NONE;
    if (!(c->cloud_id = strdup(a->cloud_id))) st = FERRY_ENOMEM;
  } else {
    c->kind = FERRY_CALL_CREATE;
    c->generation = a ? a->create_generation : 0;
    c->resume_create = a && a->state == FERRY__V1__ENTITY_STATE__ENTITY_STATE_CREATING;
  }
done:
  if (st == FERRY_ENOMEM) ferry_error_set(err, st, "out of memory planning %s/%s", c->entity, c->key);
  free(r.waits_for);
  json_decref(payload);
  json_decref(applied);
  return st;
}

/* Plans entity (by name: a type the mapping dropped can still be deleted).
 * With only_deletes, an entity the mapping still yields cannot be one, and
 * *out stays NULL without reading its applied state or planning it. */
static ferry_status plan_entity(ferry_projector *p, const char *entity, const char *key,
                                bool dry_run, bool only_deletes, ferry_call **out,
                                ferry_error *err) {
  Ferry__V1__DesiredEntity *d = NULL;
  Ferry__V1__AppliedEntity *a = NULL;
  ferry_call *c = calloc(1, sizeof *c);
  ferry_status st = c ? FERRY_OK : FERRY_ENOMEM;
  size_t e = ferry_mapping_entity_find(p->map, entity);
  *out = NULL;
  if (!st) st = proj_desired_get(p, NULL, entity, key, &d, err);
  if (!st && only_deletes && d && !d->deleted && e != SIZE_MAX) {
    ferry__v1__desired_entity__free_unpacked(d, NULL);
    free(c);
    return FERRY_OK;
  }
  if (!st) st = proj_applied_get(p, NULL, entity, key, &a, err);
  if (st) goto done;
  c->entity = strdup(entity);
  c->key = strdup(key);
  c->rank = e == SIZE_MAX ? 0 : (unsigned)e;
  c->endpoint = strdup(e != SIZE_MAX ? ferry_mapping_entity_endpoint(p->map, e)
                                     : (a && a->endpoint ? a->endpoint : ""));
  size_t n = strlen(entity) + strlen(key) + 2;
  if ((c->external_key = malloc(n))) snprintf(c->external_key, n, "%s/%s", entity, key);
  if (!c->entity || !c->key || !c->endpoint || !c->external_key) { st = FERRY_ENOMEM; goto done; }
  if (d && d->n_cause_seqs) {
    if (!(c->seqs = malloc(d->n_cause_seqs * sizeof *c->seqs))) { st = FERRY_ENOMEM; goto done; }
    memcpy(c->seqs, d->cause_seqs, d->n_cause_seqs * sizeof *c->seqs);
    c->nseqs = d->n_cause_seqs;
  }
  if (d && !d->deleted && e != SIZE_MAX) {
    st = plan_desired(p, c, d, a, dry_run, err);
  } else if (a && a->state == FERRY__V1__ENTITY_STATE__ENTITY_STATE_CREATED) {
    c->kind = FERRY_CALL_DELETE;
    if (!(c->cloud_id = strdup(a->cloud_id))) st = FERRY_ENOMEM;
  } else if (a && a->state == FERRY__V1__ENTITY_STATE__ENTITY_STATE_CREATING) {
    c->kind = FERRY_CALL_DELETE; /* no id: find it by external key, delete it if there */
  } else {
    c->kind = FERRY_CALL_NONE;
  }
  if (!st) { /* the applier's hooks use what was read here */
    proj_call_state *cs = calloc(1, sizeof *cs);
    if (!cs) {
      st = FERRY_ENOMEM;
      goto done;
    }
    cs->d = d;
    cs->a = a;
    c->state = cs;
    d = NULL;
    a = NULL;
  }
done:
  if (st == FERRY_ENOMEM) ferry_error_set(err, st, "out of memory planning %s/%s", entity, key);
  if (d) ferry__v1__desired_entity__free_unpacked(d, NULL);
  if (a) ferry__v1__applied_entity__free_unpacked(a, NULL);
  if (st) ferry_call_free(c);
  else *out = c;
  return st;
}

ferry_status ferry_projector_plan_entity(ferry_projector *p, const char *entity, const char *key,
                                         ferry_call **out, ferry_error *err) {
  return plan_entity(p, entity, key, false, false, out, err);
}

unsigned ferry_projector_phases(const ferry_projector *p) { return (unsigned)(2 * p->nentities); }

void ferry_plan_cursor_reset(ferry_plan_cursor *cur) {
  if (!cur) return;
  free(cur->key);
  cur->key = NULL;
  cur->len = 0;
  cur->phase = 0;
}

/* Walks phase (after cur's key, when cur has one for this phase), handing
 * each call of the phase to fn until it returns non-zero (*stop). */
static ferry_status walk_phase(ferry_projector *p, unsigned phase, bool dry_run,
                               ferry_plan_cursor *cur, int (*fn)(void *, ferry_call **),
                               void *arg, int *stop, ferry_error *err) {
  unsigned n = (unsigned)p->nentities;
  bool deletes = phase >= n;
  unsigned rank = deletes ? 2 * n - 1 - phase : phase;
  uint8_t rk[2] = {(uint8_t)(rank >> 8), (uint8_t)rank}, hi[2];
  unsigned next = rank + 1;
  hi[0] = (uint8_t)(next >> 8);
  hi[1] = (uint8_t)next;
  if (cur && cur->phase != phase) {
    ferry_plan_cursor_reset(cur);
    cur->phase = phase;
  }
  char *from = NULL; /* just after the cursor: its key and a zero byte */
  size_t fromlen = 0;
  if (cur && cur->key) {
    if (!(from = malloc(cur->len + 1))) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
    memcpy(from, cur->key, cur->len);
    from[cur->len] = '\0';
    fromlen = cur->len + 1;
  }
  ferry_kv_iter *it = NULL;
  ferry_status st = ferry_kv_iter_open(p->store, FERRY_CF_DIRTY, p->customer, from ? from : (char *)rk,
                                       from ? fromlen : 2, hi, 2, &it, err);
  free(from);
  const char *key, *val;
  size_t klen, vlen;
  int r = 0;
  while (!st && !*stop && (r = ferry_kv_iter_next(it, &key, &klen, &val, &vlen)) == 1) {
    unsigned rkn;
    const char *ename, *ekey;
    size_t elen, eklen;
    if (cur) {
      char *k = realloc(cur->key, klen ? klen : 1);
      if (!k) {
        st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
        break;
      }
      memcpy(k, key, klen);
      cur->key = k;
      cur->len = klen;
    }
    if (ferry_key_dirty_parse(key, klen, &rkn, &ename, &elen, &ekey, &eklen)) continue;
    char *name = strndup(ename, elen), *k = strndup(ekey, eklen);
    ferry_call *c = NULL;
    if (!name || !k) st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
    else st = plan_entity(p, name, k, dry_run, deletes, &c, err);
    if (!st && c && (c->kind == FERRY_CALL_DELETE) == deletes) *stop = fn(arg, &c);
    ferry_call_free(c);
    free(name);
    free(k);
  }
  if (!st && r < 0) st = ferry_kv_iter_error(it, err);
  ferry_kv_iter_close(it);
  return st;
}

ferry_status ferry_projector_plan_phase(ferry_projector *p, unsigned phase, ferry_plan_cursor *cur,
                                        int (*fn)(void *arg, ferry_call **c), void *arg,
                                        ferry_error *err) {
  int stop = 0;
  return walk_phase(p, phase, false, cur, fn, arg, &stop, err);
}

typedef struct plan_all {
  int (*fn)(void *arg, const ferry_call *c);
  void *arg;
} plan_all;

static int hand_const(void *arg, ferry_call **c) {
  plan_all *a = arg;
  return a->fn(a->arg, *c);
}

ferry_status ferry_projector_plan(ferry_projector *p, int (*fn)(void *arg, const ferry_call *c),
                                  void *arg, ferry_error *err) {
  int stop = 0;
  ferry_status st = FERRY_OK;
  plan_all a = {fn, arg};
  for (unsigned ph = 0; ph < ferry_projector_phases(p) && !st && !stop; ph++)
    st = walk_phase(p, ph, true, NULL, hand_const, &a, &stop, err);
  return st;
}
