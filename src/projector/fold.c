/*
 * The fold: events after the checkpoint go into the mirror of legacy rows,
 * and exactly the entities those rows can affect are derived again.
 *
 * DESIGN
 * A batch of events is folded into one indexed write batch (it reads its own
 * writes), committed together with the checkpoint, so a crash redoes a whole
 * batch and never half of one. For each event:
 *   1. Stale changes (version not above the mirror's, tombstones included)
 *      change nothing.
 *   2. The mirror row and the join-index entries of its indexed columns are
 *      replaced ('I' table column value rowkey; null values are not indexed,
 *      since null never joins).
 *   3. The roots whose entities the row can change are "touched": roots of
 *      entities whose source is the row's table (the row itself, unless the
 *      entity reads no column the change altered); for each
 *      collect of the table, the parents named by the old and the new value
 *      of the foreign key; for each lookup into the table, the rows that
 *      point at this key (found through the index), and for a lookup inside a
 *      collect, the parents of those child rows.
 * Then every touched root is derived once from the mirror (so fifty changes
 * to one root cost one derive). A root yields at most one entity key per
 * entity type; its claim ('C' entity key rootkey) and the key it yields
 * ('R' entity rootkey) are kept, so a key change removes the old entity.
 * (An entity keyed "{_key}" needs neither: its key is its root's, so one
 * root claims it, and a live desired record says the root holds it.)
 * When several roots claim one key, the claim with the smallest root key owns
 * it (deterministic whatever the order of arrival, so a replay agrees with
 * the incremental fold) and the others are listed as conflicts.
 * The owner's payload is serialised canonically and hashed (XXH3-128); a new
 * hash is written to desired with the event seqs that caused it, and the
 * entity is marked dirty when it differs from what the cloud has.
 * References live in payloads as markers, resolved only when applied; the
 * 'B' index (who references whom) lets a change of a target's existence mark
 * its referrers dirty.
 */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/pbjson.h"
#include "common/strmap.h"
#include "ferry/change.h"
#include "ferry/event.h"
#include "ferry/v1/event.pb-c.h"
#include "projector/proj.h"


/* Mirror writes; derived ones add about as much. Two batches are in memory
 * at once, and each keeps its buffers for the next (ferry_wbatch_reset). */
#define FOLD_BATCH_BYTES (4u << 20)

typedef struct seqlist {
  uint64_t *v;
  size_t n, cap;
} seqlist;

typedef struct fold_ctx {
  ferry_projector *p;
  ferry_wbatch *b;
  strmap touched; /* be16(entity) rootkey -> seqlist* */
  ferry_error *err;
  /* The last root row derived from (the mirror does not change while the
   * touched roots are derived; the entity types split off one row are
   * touched one after another, so the next derive usually wants it again). */
  const char *row_table;
  char *row_key;
  json_t *row;
  /* The rows lookups read while the batch's roots are derived, by "table\0key"
   * (NULL: no such row): the mirror stands still meanwhile, and a lookup
   * table is small and read by many roots (every contact reads one of 100
   * suburbs: a store read and a decode each, 10% of the fold thread). */
  strmap lookups;
} fold_ctx;

static void seqlist_free(void *v) {
  seqlist *s = v;
  if (s) free(s->v);
  free(s);
}

static ferry_status touch(fold_ctx *c, size_t entity, const char *rootkey, size_t rlen,
                          uint64_t seq) {
  char buf[2 + FERRY_KEY_MAX];
  if (rlen > FERRY_KEY_MAX) return FERRY_OK; /* cannot be a row key */
  buf[0] = (char)(entity >> 8);
  buf[1] = (char)entity;
  memcpy(buf + 2, rootkey, rlen);
  strmap_entry *e = strmap_upsert(&c->touched, buf, rlen + 2, NULL);
  if (!e) return ferry_error_set(c->err, FERRY_ENOMEM, "out of memory folding");
  seqlist *s = e->val;
  if (!s && !(s = e->val = calloc(1, sizeof *s)))
    return ferry_error_set(c->err, FERRY_ENOMEM, "out of memory folding");
  if (s->n && s->v[s->n - 1] == seq) return FERRY_OK;
  if (s->n == s->cap) {
    if (s->cap >= FERRY_CAUSES_MAX) { /* keep the latest */
      memmove(s->v, s->v + 1, (s->n - 1) * sizeof *s->v);
      s->v[s->n - 1] = seq;
      return FERRY_OK;
    }
    size_t cap = s->cap ? s->cap * 2 : 4;
    uint64_t *v = realloc(s->v, cap * sizeof *v);
    if (!v) return ferry_error_set(c->err, FERRY_ENOMEM, "out of memory folding");
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = seq;
  return FERRY_OK;
}

/* ---------------------------------------------------------- join index --- */

static void index_key(ferry_key *k, const char *table, const char *column, const char *val,
                      size_t vlen) {
  ferry_key_reset(k);
  ferry_key_byte(k, 'I');
  ferry_key_enc16(k, table, strlen(table));
  ferry_key_enc16(k, column, strlen(column));
  ferry_key_enc32(k, val, vlen);
}

static ferry_status prefix_scan(ferry_projector *p, ferry_wbatch *b, const ferry_key *prefix,
                                ferry_status (*fn)(void *, const char *, size_t), void *arg,
                                ferry_error *err);

/* Calls fn(arg, rowkey) for every row of table whose column renders as value. */
static ferry_status index_scan(ferry_projector *p, ferry_wbatch *b, const char *table,
                               const char *column, const char *value, size_t vlen,
                               ferry_status (*fn)(void *, const char *, size_t), void *arg,
                               ferry_error *err) {
  ferry_key lo;
  index_key(&lo, table, column, value, vlen);
  return prefix_scan(p, b, &lo, fn, arg, err);
}

/* The prefix a key of the index family is scanned by (ferry_scan_prefix_fn):
 * 'I' table column value | rowkey, 'C' entity ekey | rootkey, 'B' target
 * tkey | referrer. 'R' and 'b' keys are only read by key. */
static size_t scan_prefix(const void *key, size_t klen) {
  const char *k = key, *s;
  size_t pos = 1, n;
  if (klen < 1 || (k[0] != 'I' && k[0] != 'C' && k[0] != 'B')) return 0;
  if (k[0] == 'I' && ferry_key_read16(k, klen, &pos, &s, &n)) return 0; /* the table */
  if (ferry_key_read16(k, klen, &pos, &s, &n) || ferry_key_read32(k, klen, &pos, &s, &n)) return 0;
  return pos;
}

/* ------------------------------------------------------------ row source --- */

ferry_status proj_mirror_row(ferry_projector *p, ferry_wbatch *b, const char *table,
                             const char *key, json_t **row, Ferry__V1__MirrorRow **mrout,
                             ferry_error *err) {
  ferry_key k;
  char *val = NULL;
  size_t vlen = 0;
  *row = NULL;
  if (mrout) *mrout = NULL;
  ferry_key_mirror(&k, table, key);
  if (k.overflow) return FERRY_OK;
  ferry_status st = proj_get(p, b, FERRY_CF_MIRROR, &k, &val, &vlen, err);
  if (st == FERRY_ENOTFOUND) return FERRY_OK;
  if (st) return st;
  /* a row only read as JSON is unpacked into the scratch arena */
  ProtobufCAllocator scratch = proj_scratch_allocator(&p->row_scratch);
  Ferry__V1__MirrorRow *mr =
      ferry__v1__mirror_row__unpack(mrout ? NULL : &scratch, vlen, (const uint8_t *)val);
  free(val);
  if (!mr) st = ferry_error_set(err, FERRY_ECORRUPT, "mirror row %s/%s does not decode", table, key);
  else if (!mr->deleted && !(*row = ferry_pb_row_to_json(mr->row, mr->n_row)))
    st = ferry_error_set(err, FERRY_ENOMEM, "out of memory reading a row");
  if (mrout && !st) *mrout = mr;
  else if (mrout && mr) ferry__v1__mirror_row__free_unpacked(mr, NULL);
  if (!mrout) arena_reset(&p->row_scratch);
  return st;
}

typedef proj_src src_ctx;

typedef struct each_ctx {
  src_ctx *s;
  const char *table;
  ferry_row_fn fn;
  void *fnarg;
  ferry_error *err;
} each_ctx;

/* At most this many rows are kept for lookups in one batch. */
#define FOLD_LOOKUP_ROWS 4096

static void row_free(void *v) { json_decref(v); }

static ferry_status src_get_row(void *arg, const char *table, const char *key, json_t **row,
                                ferry_error *err) {
  src_ctx *s = arg;
  if (!s->lookups) return proj_mirror_row(s->p, s->b, table, key, row, NULL, err);
  size_t tl = strlen(table), kl = strlen(key);
  char kb[512], *k = tl + kl + 1 <= sizeof kb ? kb : malloc(tl + kl + 1);
  if (!k) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  memcpy(k, table, tl + 1);
  memcpy(k + tl + 1, key, kl);
  strmap_entry *e = strmap_get(s->lookups, k, tl + 1 + kl);
  ferry_status st = FERRY_OK;
  if (e) {
    *row = json_incref(e->val);
  } else if (!(st = proj_mirror_row(s->p, s->b, table, key, row, NULL, err)) &&
             s->lookups->count < FOLD_LOOKUP_ROWS &&
             (e = strmap_upsert(s->lookups, k, tl + 1 + kl, NULL)) != NULL) {
    e->val = json_incref(*row); /* out of memory: just not kept */
  }
  if (k != kb) free(k);
  return st;
}

static ferry_status each_visit(void *arg, const char *rowkey, size_t len) {
  each_ctx *e = arg;
  char *key = strndup(rowkey, len);
  json_t *row = NULL;
  if (!key) return ferry_error_set(e->err, FERRY_ENOMEM, "out of memory");
  ferry_status st = proj_mirror_row(e->s->p, e->s->b, e->table, key, &row, NULL, e->err);
  if (!st && row) st = e->fn(e->fnarg, key, row);
  json_decref(row);
  free(key);
  return st;
}

static ferry_status src_each_row(void *arg, const char *table, const char *column,
                                 const char *value, ferry_row_fn fn, void *fnarg,
                                 ferry_error *err) {
  src_ctx *s = arg;
  each_ctx e = {s, table, fn, fnarg, err};
  return index_scan(s->p, s->b, table, column, value, strlen(value), each_visit, &e, err);
}

void proj_row_source(proj_src *ctx, ferry_row_source *src) {
  src->arg = ctx;
  src->get_row = src_get_row;
  src->each_row = src_each_row;
}

/* ------------------------------------------------------- applying a change --- */

/* The text a column renders as in joins; NULL (no entry) for null/absent. */
static char *join_text(const json_t *row, const char *column, size_t *len) {
  const json_t *v = row ? json_object_get(row, column) : NULL;
  if (!v || json_is_null(v)) return NULL;
  return ferry_value_text(v, len);
}

static bool has_value(const json_t *row, const char *column) {
  const json_t *v = row ? json_object_get(row, column) : NULL;
  return v && !json_is_null(v);
}

/* Replaces the index entries of every indexed column of table for one row. */
static ferry_status reindex(fold_ctx *c, const char *table, const char *rowkey, const json_t *old,
                            const json_t *new_) {
  ferry_projector *p = c->p;
  for (size_t i = 0; i < p->njoins; i++) {
    const ferry_mapping_join *j = &p->joins[i];
    const char *t = j->kind == FERRY_JOIN_LOOKUP ? j->from : j->table;
    if (strcmp(t, table) != 0) continue;
    bool seen = false; /* the same column may serve several joins: index it once */
    for (size_t k = 0; k < i && !seen; k++) {
      const ferry_mapping_join *o = &p->joins[k];
      const char *ot = o->kind == FERRY_JOIN_LOOKUP ? o->from : o->table;
      seen = strcmp(ot, table) == 0 && strcmp(o->column, j->column) == 0;
    }
    if (seen) continue;
    size_t ol = 0, nl = 0;
    char *ov = join_text(old, j->column, &ol), *nv = join_text(new_, j->column, &nl);
    if ((!ov && has_value(old, j->column)) || (!nv && has_value(new_, j->column))) {
      free(ov);
      free(nv);
      return ferry_error_set(c->err, FERRY_ENOMEM, "out of memory indexing");
    }
    if (!(ov && nv && ol == nl && memcmp(ov, nv, ol) == 0)) {
      ferry_key k;
      if (ov) {
        index_key(&k, table, j->column, ov, ol);
        ferry_key_raw(&k, rowkey, strlen(rowkey));
        if (!k.overflow) ferry_wbatch_delete(c->b, FERRY_CF_INDEX, k.b, k.len);
      }
      if (nv) {
        index_key(&k, table, j->column, nv, nl);
        ferry_key_raw(&k, rowkey, strlen(rowkey));
        if (!k.overflow) ferry_wbatch_put(c->b, FERRY_CF_INDEX, k.b, k.len, "", 0);
      }
    }
    free(ov);
    free(nv);
  }
  return FERRY_OK;
}

typedef struct touch_ctx {
  fold_ctx *c;
  size_t entity;
  uint64_t seq;
  const char *child_table;      /* lookup inside a collect: children found */
  const char *parent_column;    /* ... name their parent in this column */
} touch_ctx;

static ferry_status touch_found(void *arg, const char *rowkey, size_t len) {
  touch_ctx *t = arg;
  if (!t->child_table) return touch(t->c, t->entity, rowkey, len, t->seq);
  /* a child row that looks the changed row up: its parent is the root */
  char *key = strndup(rowkey, len);
  json_t *row = NULL;
  if (!key) return ferry_error_set(t->c->err, FERRY_ENOMEM, "out of memory");
  ferry_status st = proj_mirror_row(t->c->p, t->c->b, t->child_table, key, &row, NULL, t->c->err);
  size_t plen = 0;
  char *parent = st ? NULL : join_text(row, t->parent_column, &plen);
  if (parent) st = touch(t->c, t->entity, parent, plen, t->seq);
  free(parent);
  json_decref(row);
  free(key);
  return st;
}

/* Touches every root whose entity the change of (table, rowkey) can affect. */
static ferry_status touch_roots(fold_ctx *c, const char *table, const char *rowkey,
                                const json_t *old, const json_t *new_, uint64_t seq) {
  ferry_projector *p = c->p;
  ferry_status st = FERRY_OK;
  /* An entity split off a row whose columns it reads did not change (the
   * address of a contact whose name changed) cannot change: not derived. */
  for (size_t e = 0; e < p->nentities && !st; e++)
    if (strcmp(ferry_mapping_entity_source(p->map, e), table) == 0 &&
        ferry_mapping_root_change_matters(p->map, e, old, new_))
      st = touch(c, e, rowkey, strlen(rowkey), seq);
  for (size_t i = 0; i < p->njoins && !st; i++) {
    const ferry_mapping_join *j = &p->joins[i];
    if (strcmp(j->table, table) != 0) continue;
    if (j->kind == FERRY_JOIN_COLLECT) {
      size_t ol = 0, nl = 0;
      char *ov = join_text(old, j->column, &ol), *nv = join_text(new_, j->column, &nl);
      if (ov) st = touch(c, j->entity, ov, ol, seq);
      if (nv && !st) st = touch(c, j->entity, nv, nl, seq);
      free(ov);
      free(nv);
    } else {
      touch_ctx t = {c, j->entity, seq, NULL, NULL};
      if (j->parent != FERRY_JOIN_NONE) {
        t.child_table = j->from;
        t.parent_column = p->joins[j->parent].column;
      }
      st = index_scan(p, c->b, j->from, j->column, rowkey, strlen(rowkey), touch_found, &t, c->err);
    }
  }
  return st;
}

/* Folds one change into the mirror and touches what it affects. */
static ferry_status apply_change(fold_ctx *c, uint64_t seq, const Ferry__V1__Change *ch) {
  ferry_projector *p = c->p;
  Ferry__V1__MirrorRow *cur = NULL;
  json_t *old = NULL, *new_ = NULL;
  ferry_status st = proj_mirror_row(p, c->b, ch->table, ch->key, &old, &cur, c->err);
  if (st) goto done;
  if (cur && ch->version <= cur->version) goto done; /* stale: kept in the log only */
  bool live = ch->op == FERRY__V1__OP__OP_UPSERT;
  if (live && !(new_ = ferry_pb_row_to_json(ch->row, ch->n_row))) {
    st = ferry_error_set(c->err, FERRY_ENOMEM, "out of memory folding");
    goto done;
  }
  if ((st = reindex(c, ch->table, ch->key, old, new_))) goto done;
  Ferry__V1__MirrorRow mr = FERRY__V1__MIRROR_ROW__INIT;
  mr.version = ch->version;
  mr.seq = seq;
  mr.deleted = !live;
  if (live) {
    mr.row = ch->row;
    mr.n_row = ch->n_row;
  }
  ferry_key k;
  ferry_key_mirror(&k, ch->table, ch->key);
  if (k.overflow) goto done;
  proj_put_pb(c->b, FERRY_CF_MIRROR, &k, &mr.base);
  st = touch_roots(c, ch->table, ch->key, old, new_, seq);
done:
  json_decref(old);
  json_decref(new_);
  if (cur) ferry__v1__mirror_row__free_unpacked(cur, NULL);
  return st;
}

/* ----------------------------------------------------------- deriving --- */

static void claim_prefix(ferry_key *k, const char *entity, const char *ekey) {
  ferry_key_reset(k);
  ferry_key_byte(k, 'C');
  ferry_key_enc16(k, entity, strlen(entity));
  ferry_key_enc32(k, ekey, strlen(ekey));
}

static void root_key(ferry_key *k, const char *entity, const char *rootkey) {
  ferry_key_reset(k);
  ferry_key_byte(k, 'R');
  ferry_key_enc16(k, entity, strlen(entity));
  ferry_key_raw(k, rootkey, strlen(rootkey));
}

static void backref_prefix(ferry_key *k, const char *target, const char *tkey) {
  ferry_key_reset(k);
  ferry_key_byte(k, 'B');
  ferry_key_enc16(k, target, strlen(target));
  ferry_key_enc32(k, tkey, strlen(tkey));
}

typedef struct claims {
  char *owner;
  char **others;
  size_t nothers;
} claims;

static ferry_status claim_visit(void *arg, const char *rootkey, size_t len) {
  claims *c = arg;
  char *k = strndup(rootkey, len);
  if (!k) return FERRY_ENOMEM;
  if (!c->owner) { c->owner = k; return FERRY_OK; }
  if (c->nothers >= 16) { free(k); return FERRY_OK; } /* enough to report */
  char **o = realloc(c->others, (c->nothers + 1) * sizeof *o);
  if (!o) { free(k); return FERRY_ENOMEM; }
  c->others = o;
  c->others[c->nothers++] = k;
  return FERRY_OK;
}

static void claims_free(claims *c) {
  free(c->owner);
  for (size_t i = 0; i < c->nothers; i++) free(c->others[i]);
  free(c->others);
}

/* Scans a prefix of the index family (through b, or the store) for keys. */
static ferry_status prefix_scan(ferry_projector *p, ferry_wbatch *b, const ferry_key *prefix,
                                ferry_status (*fn)(void *, const char *, size_t), void *arg,
                                ferry_error *err) {
  if (prefix->overflow) return FERRY_OK;
  ferry_status st = FERRY_OK;
  if (b) {
    st = ferry_wbatch_scan(b, prefix->b, prefix->len, fn, arg, err);
  } else {
    ferry_key hi = *prefix; /* the prefix is length-delimited: +1 on its last byte bounds it */
    size_t i = hi.len;
    while (i > 0 && hi.b[i - 1] == 0xff) i--;
    if (i == 0) return FERRY_OK;
    hi.b[i - 1]++;
    hi.len = i;
    ferry_kv_iter *it = NULL;
    if ((st = ferry_kv_iter_open(p->store, FERRY_CF_INDEX, p->customer, prefix->b, prefix->len,
                                 hi.b, hi.len, &it, err)))
      return st;
    const char *key, *val;
    size_t klen, vlen;
    int r;
    while ((r = ferry_kv_iter_next(it, &key, &klen, &val, &vlen)) == 1)
      if ((st = fn(arg, key + prefix->len, klen - prefix->len))) break;
    if (r < 0 && !st) st = ferry_kv_iter_error(it, err);
    ferry_kv_iter_close(it);
  }
  if (st == FERRY_ENOMEM) ferry_error_set(err, st, "out of memory");
  return st;
}

typedef struct ref_ctx {
  ferry_wbatch *b;
  const char *entity;
  const char *ekey;
  bool put;
} ref_ctx;

/* 'b' target tkey: the target has (or had) referrers, so a scan of its 'B'
 * entries can find some. Absent for most keys, where a point read (a bloom
 * miss) is much cheaper than opening a scan. Never removed: a stale marker
 * costs one empty scan. */
static void referred_key(ferry_key *k, const char *target, const char *tkey) {
  ferry_key_reset(k);
  ferry_key_byte(k, 'b');
  ferry_key_enc16(k, target, strlen(target));
  ferry_key_raw(k, tkey, strlen(tkey));
}

static ferry_status backref_edit(void *arg, const char *target, const char *tkey) {
  ref_ctx *r = arg;
  ferry_key k;
  if (r->put) {
    referred_key(&k, target, tkey);
    if (!k.overflow) ferry_wbatch_put(r->b, FERRY_CF_INDEX, k.b, k.len, "", 0);
  }
  backref_prefix(&k, target, tkey);
  ferry_key_enc16(&k, r->entity, strlen(r->entity));
  ferry_key_raw(&k, r->ekey, strlen(r->ekey));
  if (k.overflow) return FERRY_OK;
  if (r->put) ferry_wbatch_put(r->b, FERRY_CF_INDEX, k.b, k.len, "", 0);
  else ferry_wbatch_delete(r->b, FERRY_CF_INDEX, k.b, k.len);
  return FERRY_OK;
}

/* Adds or removes the 'B' entries for every reference in a payload. */
static ferry_status edit_backrefs(ferry_wbatch *b, const char *entity, const char *ekey,
                                  const char *payload_text, const json_t *payload, bool put) {
  json_t *parsed = NULL;
  if (!payload) {
    if (!payload_text || !strstr(payload_text, "\"$ref\"")) return FERRY_OK;
    payload = parsed = json_loads(payload_text, JSON_DECODE_ANY, NULL);
    if (!parsed) return FERRY_ECORRUPT;
  }
  ref_ctx r = {b, entity, ekey, put};
  ferry_status st = ferry_payload_refs(payload, backref_edit, &r);
  json_decref(parsed);
  return st;
}

typedef struct mark_ctx {
  ferry_projector *p;
  strmap found; /* be16(entity) key of each referrer; marked after the scan */
} mark_ctx;

static ferry_status mark_visit(void *arg, const char *rest, size_t len) {
  mark_ctx *m = arg;
  size_t pos = 0, elen;
  const char *ename;
  char name[FERRY_ENTITY_NAME_MAX + 1], buf[2 + FERRY_EKEY_MAX];
  if (ferry_key_read16(rest, len, &pos, &ename, &elen) || elen > FERRY_ENTITY_NAME_MAX ||
      len - pos > FERRY_EKEY_MAX)
    return FERRY_OK;
  memcpy(name, ename, elen);
  name[elen] = '\0';
  size_t e = ferry_mapping_entity_find(m->p->map, name);
  if (e == SIZE_MAX) return FERRY_OK;
  buf[0] = (char)(e >> 8);
  buf[1] = (char)e;
  memcpy(buf + 2, rest + pos, len - pos);
  return strmap_upsert(&m->found, buf, 2 + len - pos, NULL) ? FERRY_OK : FERRY_ENOMEM;
}

/* Whether any entity type references entity type e (else it has no referrers). */
static bool referenced(const ferry_projector *p, size_t e) {
  for (size_t i = e + 1; i < p->nentities; i++) { /* referrers rank after their targets */
    size_t n = 0;
    const size_t *refs = ferry_mapping_entity_refs(p->map, i, &n);
    for (size_t k = 0; k < n; k++)
      if (refs[k] == e) return true;
  }
  return false;
}

ferry_status proj_mark_referrers(ferry_projector *p, ferry_wbatch *b, size_t entity,
                                 const char *ekey, ferry_error *err) {
  if (!referenced(p, entity)) return FERRY_OK;
  ferry_key k;
  char *v = NULL;
  size_t vlen = 0;
  referred_key(&k, ferry_mapping_entity_name(p->map, entity), ekey);
  ferry_status st = proj_get(p, b, FERRY_CF_INDEX, &k, &v, &vlen, err);
  free(v);
  if (st == FERRY_ENOTFOUND) return FERRY_OK; /* nothing ever referred to it */
  if (st) return st;
  backref_prefix(&k, ferry_mapping_entity_name(p->map, entity), ekey);
  mark_ctx m = {p, {0}};
  strmap_init(&m.found);
  /* the batch may not change while an iterator over it is open: collect, then mark */
  st = prefix_scan(p, b, &k, mark_visit, &m, err);
  for (size_t i = 0; !st && i < m.found.count; i++) {
    const strmap_entry *f = &m.found.entries[i];
    proj_mark_dirty(p, b, ((size_t)(uint8_t)f->key[0] << 8) | (uint8_t)f->key[1], f->key + 2, true);
  }
  strmap_free(&m.found, NULL);
  return st;
}

/* Appends seqs to a desired record's causes, keeping the latest FERRY_CAUSES_MAX. */
static ferry_status add_causes(Ferry__V1__DesiredEntity *d, const uint64_t *old, size_t nold,
                               uint64_t dropped, const seqlist *seqs) {
  size_t n = nold + (seqs ? seqs->n : 0);
  d->cause_seqs = malloc((n ? n : 1) * sizeof *d->cause_seqs);
  if (!d->cause_seqs) return FERRY_ENOMEM;
  size_t k = 0;
  for (size_t i = 0; i < nold; i++) d->cause_seqs[k++] = old[i];
  for (size_t i = 0; seqs && i < seqs->n; i++)
    if (!k || d->cause_seqs[k - 1] < seqs->v[i]) d->cause_seqs[k++] = seqs->v[i];
  d->causes_dropped = dropped;
  if (k > FERRY_CAUSES_MAX) {
    size_t cut = k - FERRY_CAUSES_MAX;
    memmove(d->cause_seqs, d->cause_seqs + cut, FERRY_CAUSES_MAX * sizeof *d->cause_seqs);
    d->causes_dropped += cut;
    k = FERRY_CAUSES_MAX;
  }
  d->n_cause_seqs = k;
  return FERRY_OK;
}

/* The payload of the owner root of (entity, ekey), given the one just derived. */
static ferry_status owner_payload(fold_ctx *c, size_t e, const char *owner, const char *hint_root,
                                  json_t *hint, json_t **out) {
  if (hint_root && strcmp(owner, hint_root) == 0) {
    *out = json_incref(hint);
    return FERRY_OK;
  }
  json_t *row = NULL;
  ferry_status st = proj_mirror_row(c->p, c->b, ferry_mapping_entity_source(c->p->map, e), owner,
                                    &row, NULL, c->err);
  if (st || !row) return st;
  proj_src sc = {c->p, c->b, &c->lookups};
  ferry_row_source src;
  proj_row_source(&sc, &src);
  int passes = 0;
  st = ferry_mapping_derive(c->p->map, e, owner, row, &src, &passes, NULL, out, c->err);
  json_decref(row);
  return st;
}

typedef enum claim_action { CLAIM_KEEP, CLAIM_NEW, CLAIM_RELEASE } claim_action;

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The claimants of a key without a scan: the desired record names the owner
 * and (up to 16) the other claimants, so the set after this root's action is
 * known. Returns 1 when it could not tell (the list was full): then scan. */
static int claims_from_record(const Ferry__V1__DesiredEntity *old, const char *me,
                              claim_action act, claims *cl) {
  bool live = old && !old->deleted;
  if (!live) {
    if (act == CLAIM_RELEASE) return 0; /* nobody claims a key without a live record */
    return (cl->owner = strdup(me)) ? 0 : -1;
  }
  if (old->n_conflicts >= 16) return 1;
  size_t n = 0;
  char **set = calloc(old->n_conflicts + 2, sizeof *set);
  if (!set) return -1;
  set[n++] = old->root_key;
  for (size_t i = 0; i < old->n_conflicts; i++) set[n++] = old->conflicts[i];
  bool present = false;
  for (size_t i = 0; i < n; i++) present |= strcmp(set[i], me) == 0;
  if (act != CLAIM_RELEASE && !present) set[n++] = (char *)me;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) /* drop me on release */
    if (act != CLAIM_RELEASE || strcmp(set[i], me) != 0) set[k++] = set[i];
  qsort(set, k, sizeof *set, cmp_str);
  int rc = 0;
  if (k && !(cl->owner = strdup(set[0]))) rc = -1;
  if (!rc && k > 1 && !(cl->others = calloc(k - 1, sizeof *cl->others))) rc = -1;
  for (size_t i = 1; !rc && i < k; i++)
    if (!(cl->others[cl->nothers++] = strdup(set[i]))) rc = -1;
  free(set);
  return rc;
}

/* Writes a desired record for (e, ekey) from its owner; marks dirty as needed. */
static ferry_status settle_key(fold_ctx *c, size_t e, const char *ekey, const char *me,
                               claim_action act, json_t *hint, const seqlist *seqs) {
  const char *hint_root = act == CLAIM_RELEASE ? NULL : me;
  ferry_projector *p = c->p;
  const char *ename = ferry_mapping_entity_name(p->map, e);
  claims cl = {NULL, NULL, 0};
  Ferry__V1__DesiredEntity *old = NULL;
  Ferry__V1__AppliedEntity *applied = NULL;
  json_t *payload = NULL;
  char *text = NULL;
  ferry_key k;
  ferry_status st = proj_desired_get(p, c->b, ename, ekey, &old, c->err);
  if (st) goto done;
  int known = claims_from_record(old, me, act, &cl);
  if (known < 0) {
    st = ferry_error_set(c->err, FERRY_ENOMEM, "out of memory");
    goto done;
  }
  if (known > 0) { /* many claimants: ask the claims index */
    claim_prefix(&k, ename, ekey);
    if ((st = prefix_scan(p, c->b, &k, claim_visit, &cl, c->err))) goto done;
  }
  ferry_key_entity(&k, ename, ekey);
  /* A listed claimant may no longer yield the entity (its row changed earlier
   * in this batch and it has not been derived yet): the next one owns it, and
   * the claimant's own derive later in the batch finds itself gone. */
  while (cl.owner && !st) {
    if ((st = owner_payload(c, e, cl.owner, hint_root, hint, &payload)) || payload) break;
    free(cl.owner);
    cl.owner = NULL;
    if (cl.nothers) {
      cl.owner = cl.others[0];
      memmove(cl.others, cl.others + 1, --cl.nothers * sizeof *cl.others);
    }
  }
  if (st) goto done;
  bool had = old && !old->deleted;
  /* The applied record matters only when the desired one changes, so an
   * entity whose payload comes out the same costs no read of it (at scale,
   * a read that would miss the block cache). */
  if (!payload) { /* no entity under this key any more */
    if ((st = proj_applied_get(c->p, c->b, ename, ekey, &applied, c->err))) goto done;
    if (had) {
      edit_backrefs(c->b, ename, ekey, old->payload, NULL, false);
      if ((st = proj_mark_referrers(p, c->b, e, ekey, c->err))) goto done;
    }
    bool exists = proj_is_dirty(NULL, applied);
    if (exists && had) { /* a tombstone keeps the causes until the cloud delete */
      Ferry__V1__DesiredEntity t = FERRY__V1__DESIRED_ENTITY__INIT;
      t.deleted = true;
      t.payload = "";
      t.root_key = "";
      if (add_causes(&t, old->cause_seqs, old->n_cause_seqs, old->causes_dropped, seqs)) {
        st = ferry_error_set(c->err, FERRY_ENOMEM, "out of memory");
        goto done;
      }
      proj_put_pb(c->b, FERRY_CF_DESIRED, &k, &t.base);
      free(t.cause_seqs);
    } else if (old && !exists) {
      ferry_wbatch_delete(c->b, FERRY_CF_DESIRED, k.b, k.len);
    }
    proj_mark_dirty(p, c->b, e, ekey, exists);
    goto done;
  }
  if (!(text = ferry_value_canonical(payload))) {
    st = ferry_error_set(c->err, FERRY_ENOMEM, "out of memory serialising %s/%s", ename, ekey);
    goto done;
  }
  XXH128_canonical_t h;
  XXH128_canonicalFromHash(&h, XXH3_128bits(text, strlen(text)));
  bool same = had && old->hash.len == 16 && memcmp(old->hash.data, h.digest, 16) == 0 &&
              strcmp(old->root_key, cl.owner) == 0 && old->n_conflicts == cl.nothers;
  for (size_t i = 0; same && i < cl.nothers; i++) /* the claimant list is authoritative */
    same = strcmp(old->conflicts[i], cl.others[i]) == 0;
  if (same) goto done;
  if ((st = proj_applied_get(c->p, c->b, ename, ekey, &applied, c->err))) goto done;
  Ferry__V1__DesiredEntity d = FERRY__V1__DESIRED_ENTITY__INIT;
  d.payload = text;
  d.hash.data = h.digest;
  d.hash.len = 16;
  d.root_key = cl.owner;
  d.conflicts = cl.others;
  d.n_conflicts = cl.nothers;
  if (add_causes(&d, old ? old->cause_seqs : NULL, old ? old->n_cause_seqs : 0,
                 old ? old->causes_dropped : 0, seqs)) {
    st = ferry_error_set(c->err, FERRY_ENOMEM, "out of memory");
    goto done;
  }
  /* An entity that comes back while the cloud still has it is always
   * checked: its refs may have been resolved (to null, say) while it was
   * gone, so an equal hash does not mean an equal cloud record. */
  bool revived = !had && applied && applied->state == FERRY__V1__ENTITY_STATE__ENTITY_STATE_CREATED;
  bool dirty = revived || proj_is_dirty(&d, applied);
  if (!dirty) { /* the cloud already has it (a rebuild, a change undone): nothing pending */
    d.n_cause_seqs = 0;
    d.causes_dropped = 0;
  }
  proj_put_pb(c->b, FERRY_CF_DESIRED, &k, &d.base);
  free(d.cause_seqs);
  if (had) edit_backrefs(c->b, ename, ekey, old->payload, NULL, false);
  edit_backrefs(c->b, ename, ekey, NULL, payload, true);
  if (!had && (st = proj_mark_referrers(p, c->b, e, ekey, c->err))) goto done;
  proj_mark_dirty(p, c->b, e, ekey, dirty);
done:
  free(text);
  json_decref(payload);
  claims_free(&cl);
  if (old) ferry__v1__desired_entity__free_unpacked(old, NULL);
  if (applied) ferry__v1__applied_entity__free_unpacked(applied, NULL);
  return st;
}

/* The key root yields and whether it passes, from its row through the batch. */
static ferry_status derive_payload(fold_ctx *c, size_t e, const char *rootkey, int *passes,
                                   char **ekey, json_t **payload) {
  json_t *row = NULL;
  const char *table = ferry_mapping_entity_source(c->p->map, e);
  ferry_status st = FERRY_OK;
  *passes = 0;
  if (c->row_key && strcmp(c->row_table, table) == 0 && strcmp(c->row_key, rootkey) == 0) {
    row = json_incref(c->row);
  } else {
    if ((st = proj_mirror_row(c->p, c->b, table, rootkey, &row, NULL, c->err))) return st;
    free(c->row_key);
    json_decref(c->row);
    c->row_table = table;
    c->row_key = strdup(rootkey); /* NULL when out of memory: just no cache */
    c->row = json_incref(row);
  }
  if (!row) return FERRY_OK;
  proj_src sc = {c->p, c->b, &c->lookups};
  ferry_row_source src;
  proj_row_source(&sc, &src);
  st = ferry_mapping_derive(c->p->map, e, rootkey, row, &src, passes, ekey, payload, c->err);
  json_decref(row);
  if (st == FERRY_EINVAL || st == FERRY_ETOOBIG) { /* a row the mapping cannot key: no entity */
    *passes = 0;
    return FERRY_OK;
  }
  if (!st && *passes && (!(*ekey)[0] || strlen(*ekey) > FERRY_EKEY_MAX)) *passes = 0;
  return st;
}

/* A root of an entity keyed by the root's own key: only this root can claim
 * that key, so no claims or root records are needed; whether the root held
 * the key before is whether a live desired record exists. */
static ferry_status derive_own_key(fold_ctx *c, size_t e, const char *rootkey, const seqlist *seqs) {
  char *ekey = NULL;
  json_t *payload = NULL;
  int passes = 0;
  Ferry__V1__DesiredEntity *old = NULL;
  ferry_status st = derive_payload(c, e, rootkey, &passes, &ekey, &payload);
  if (st) goto done;
  if (passes) {
    st = settle_key(c, e, rootkey, rootkey, CLAIM_NEW, payload, seqs);
    goto done;
  }
  const char *ename = ferry_mapping_entity_name(c->p->map, e);
  if ((st = proj_desired_get(c->p, c->b, ename, rootkey, &old, c->err))) goto done;
  if (old && !old->deleted) st = settle_key(c, e, rootkey, rootkey, CLAIM_RELEASE, NULL, seqs);
done:
  if (old) ferry__v1__desired_entity__free_unpacked(old, NULL);
  free(ekey);
  json_decref(payload);
  return st;
}

/* Derives the entity of one touched root again and settles the keys involved. */
static ferry_status derive_root(fold_ctx *c, size_t e, const char *rootkey, const seqlist *seqs) {
  ferry_projector *p = c->p;
  if (ferry_mapping_entity_key_is_root(p->map, e)) return derive_own_key(c, e, rootkey, seqs);
  const char *ename = ferry_mapping_entity_name(p->map, e);
  char *old_ekey = NULL, *new_ekey = NULL;
  size_t olen = 0;
  json_t *payload = NULL;
  int passes = 0;
  ferry_key rk, k;
  root_key(&rk, ename, rootkey);
  ferry_status st = proj_get(p, c->b, FERRY_CF_INDEX, &rk, &old_ekey, &olen, c->err);
  if (st == FERRY_ENOTFOUND) st = FERRY_OK;
  if (st || (st = derive_payload(c, e, rootkey, &passes, &new_ekey, &payload))) goto done;
  if (old_ekey && (!passes || strcmp(old_ekey, new_ekey) != 0)) {
    claim_prefix(&k, ename, old_ekey);
    ferry_key_raw(&k, rootkey, strlen(rootkey));
    ferry_wbatch_delete(c->b, FERRY_CF_INDEX, k.b, k.len);
    if ((st = settle_key(c, e, old_ekey, rootkey, CLAIM_RELEASE, NULL, seqs))) goto done;
  }
  if (passes) {
    bool same = old_ekey && strcmp(old_ekey, new_ekey) == 0;
    if (!same) { /* a new claim: the index (for many claimants) and the root's key */
      claim_prefix(&k, ename, new_ekey);
      ferry_key_raw(&k, rootkey, strlen(rootkey));
      ferry_wbatch_put(c->b, FERRY_CF_INDEX, k.b, k.len, "", 0);
      ferry_wbatch_put(c->b, FERRY_CF_INDEX, rk.b, rk.len, new_ekey, strlen(new_ekey));
    }
    st = settle_key(c, e, new_ekey, rootkey, same ? CLAIM_KEEP : CLAIM_NEW, payload, seqs);
  } else if (old_ekey) {
    ferry_wbatch_delete(c->b, FERRY_CF_INDEX, rk.b, rk.len);
  }
done:
  free(old_ekey);
  free(new_ekey);
  json_decref(payload);
  return st;
}

/* --------------------------------------------------------------- the loop --- */

/* Folds the events after folded_seq, up to to, into a new batch *out that
 * reads through under (an earlier batch still being written) and filter
 * (may be NULL), with the checkpoint in it; *out is NULL when there was
 * nothing to fold. It takes *spare, if there is one, instead of a new batch. */
static ferry_status fold_batch(ferry_projector *p, uint64_t to, ferry_wbatch *under,
                               ferry_wfilter *filter, ferry_wbatch **spare, ferry_wbatch **out,
                               ferry_error *err) {
  fold_ctx c = {p, NULL, {0}, err, NULL, NULL, NULL, {0}};
  ferry_log_iter *it = NULL;
  strmap_init(&c.touched);
  strmap_init(&c.lookups);
  ferry_status st = FERRY_OK;
  *out = NULL;
  c.b = *spare; /* an emptied batch of this fold, buffers and all */
  *spare = NULL;
  if (!c.b && !(c.b = ferry_wbatch_create_indexed(p->store, p->customer, scan_prefix)))
    return ferry_error_set(err, FERRY_ENOMEM, "out of memory starting a fold batch");
  ferry_wbatch_read_through(c.b, under);
  ferry_wbatch_use_filter(c.b, filter);
  if ((st = ferry_log_iter_open(p->store, p->customer, p->folded_seq + 1, &it, err))) goto done;
  uint64_t seq = p->folded_seq, n = 0;
  const uint8_t *ev;
  size_t len;
  int r = 0;
  /* seqs are consecutive, so stopping at seq == to never reads past it */
  /* A batch is bounded in events and in bytes (two are in memory at once). */
  while (n < p->fold_batch && seq < to && ferry_wbatch_bytes(c.b) < FOLD_BATCH_BYTES &&
         (r = ferry_log_iter_next(it, &seq, &ev, &len)) == 1) {
    ProtobufCAllocator scratch = proj_scratch_allocator(&p->ev_scratch);
    Ferry__V1__Event *e = ferry__v1__event__unpack(&scratch, len, ev);
    if (e && e->change) st = apply_change(&c, seq, e->change);
    else st = ferry_error_set(err, FERRY_ECORRUPT, "event %llu does not decode", (unsigned long long)seq);
    arena_reset(&p->ev_scratch); /* nothing keeps a pointer into the event */
    if (st) goto done;
    n++;
  }
  if (r < 0 && (st = ferry_log_iter_error(it, err))) goto done;
  if (n == 0) goto done;
  for (size_t i = 0; i < c.touched.count && !st; i++) {
    strmap_entry *t = &c.touched.entries[i];
    size_t e = ((size_t)(uint8_t)t->key[0] << 8) | (uint8_t)t->key[1];
    st = derive_root(&c, e, t->key + 2, t->val);
  }
  if (st) goto done;
  p->folded_seq = seq;
  p->last_fold_us = ferry_time_now_us();
  if ((st = proj_state_put(p, c.b, err))) goto done;
  *out = c.b;
  c.b = NULL;
done:
  ferry_log_iter_close(it);
  ferry_wbatch_destroy(c.b);
  strmap_free(&c.touched, seqlist_free);
  strmap_free(&c.lookups, row_free);
  free(c.row_key);
  json_decref(c.row);
  return st;
}

/* Waits for the batch being written and keeps it, emptied, as *spare (or
 * frees it); keeps the first error. */
static ferry_status finish(ferry_wbatch **b, ferry_wbatch **spare, ferry_status st,
                           ferry_error *err) {
  ferry_error e2;
  ferry_status st2 = ferry_wbatch_commit_wait(*b, &e2);
  if (spare && !*spare) {
    ferry_wbatch_reset(*b);
    *spare = *b;
  } else {
    ferry_wbatch_destroy(*b);
  }
  *b = NULL;
  if (st2 && !st && err) *err = e2;
  return st ? st : st2;
}

/*
 * Batches are pipelined: batch N+1 is folded (reading through batch N)
 * while batch N is written on another thread; N+1 is written only after N
 * is, so the store always holds a whole number of batches and the
 * checkpoint of the last.
 */
/* A long fold over families that are empty for the customer (a first fold,
 * a replay; one seek per family says so) reads them through a write filter
 * (ferry_wfilter), which answers most of its reads, of rows and entities
 * that do not exist yet, and every read of applied state of a customer
 * never synced, without the store (each was a miss through every level).
 * A fold runs alone (the customer is locked, and a sync does not run beside
 * a fold), so nothing else writes those families while it runs. Short folds
 * skip the seeks. */
#define FOLD_CHECK_EMPTY 1000
/* The filter's size per event folded: the demo mapping's fold writes 7.0
 * keys and scan prefixes an event, so about 9 bits each (2% false
 * positives). 8 or 16 bytes gave the same rate; 8 costs the least memory
 * (6 MiB at 750,000 events). Capped, since more keys only raise its false
 * positives. */
#define FOLD_FILTER_BYTES_PER_EVENT 8
#define FOLD_FILTER_MAX_BYTES (16u << 20)
/* A fold of more events than this runs in the store's bulk memory mode. */
#define FOLD_BULK_MEMORY 10000

static ferry_status family_empty(ferry_projector *p, ferry_cf cf, bool *empty, ferry_error *err) {
  ferry_kv_iter *it = NULL;
  const char *k, *v;
  size_t kl, vl;
  ferry_status st = ferry_kv_iter_open(p->store, cf, p->customer, NULL, 0, NULL, 0, &it, err);
  if (st) return st;
  int r = ferry_kv_iter_next(it, &k, &kl, &v, &vl);
  if (r < 0) st = ferry_kv_iter_error(it, err);
  ferry_kv_iter_close(it);
  *empty = !st && r == 0;
  return st;
}

/* Sets *filter for the projection's families that are empty for the
 * customer (NULL: none is). */
static ferry_status check_empty(ferry_projector *p, uint64_t events, ferry_wfilter **filter,
                                ferry_error *err) {
  static const ferry_cf fams[] = {FERRY_CF_MIRROR, FERRY_CF_INDEX, FERRY_CF_DESIRED,
                                  FERRY_CF_APPLIED, FERRY_CF_DIRTY};
  unsigned mask = 0;
  *filter = NULL;
  for (size_t i = 0; i < sizeof fams / sizeof *fams; i++) {
    bool empty = false;
    ferry_status st = family_empty(p, fams[i], &empty, err);
    if (st) return st;
    if (empty) mask |= 1u << fams[i];
  }
  if (!mask) return FERRY_OK;
  size_t bytes = events > FOLD_FILTER_MAX_BYTES / FOLD_FILTER_BYTES_PER_EVENT
                     ? FOLD_FILTER_MAX_BYTES
                     : (size_t)events * FOLD_FILTER_BYTES_PER_EVENT;
  if (!(*filter = ferry_wfilter_create(bytes, mask)))
    return ferry_error_set(err, FERRY_ENOMEM, "out of memory starting a fold");
  return FERRY_OK;
}

ferry_status proj_fold_to(ferry_projector *p, uint64_t limit, ferry_progress_fn progress,
                          void *arg, uint64_t *folded, ferry_error *err) {
  uint64_t start = p->folded_seq;
  ferry_wbatch *writing = NULL, *b = NULL, *spare = NULL;
  ferry_wfilter *filter = NULL;
  ferry_status st = FERRY_OK;
  /* (writes of the applier still pending would land beside the filter) */
  bool alone = !p->group && !p->writing;
  if (alone && limit > start && limit - start > FOLD_CHECK_EMPTY &&
      (st = check_empty(p, limit - start, &filter, err)))
    return st;
  bool bulk = limit > start && limit - start > FOLD_BULK_MEMORY;
  if (bulk) ferry_store_bulk_memory_begin();
  while (p->folded_seq < limit) {
    st = fold_batch(p, limit, writing, filter, &spare, &b, err);
    if (writing) {
      ferry_wbatch_read_through(b, NULL);
      st = finish(&writing, &spare, st, err);
    }
    if (st || !b) break; /* an error, or the log ends before limit */
    if ((st = ferry_wbatch_commit_start(b, err))) break;
    /* after a big batch, give the freed heap back (a small one frees little,
     * and the trim walks the heap: not worth it for one change) */
    if (ferry_wbatch_bytes(b) > (1u << 20)) ferry_store_release_memory();
    writing = b;
    b = NULL;
    if (progress) progress(arg, p->folded_seq - start, limit - start);
  }
  if (writing) st = finish(&writing, NULL, st, err);
  ferry_wbatch_destroy(b);
  ferry_wbatch_destroy(spare);
  if (bulk) ferry_store_bulk_memory_end();
  ferry_wfilter_destroy(filter); /* after the last batch using it is written */
  if (st) proj_state_load(p, NULL); /* the checkpoint is the last batch written */
  if (folded) *folded = p->folded_seq - start;
  return st;
}
