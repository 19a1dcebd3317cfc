/*
 * The projector against a model: seeded random change streams over a mapping
 * that uses every feature (a split, a collect whose foreign keys move, a
 * lookup fanning out to many roots, refs, filters that flip, entity keys
 * taken from a column so that roots contend for a key, deletes and
 * resurrections, stale and duplicate changes) are appended in random batch
 * sizes and folded incrementally in random fold-batch sizes. The desired
 * state must equal a from-scratch derive of the final legacy rows, which the
 * test computes itself from its own model of the rows. Rewind and replay are
 * checked against the same model.
 *
 * Real RocksDB in a temp dir; one customer per seed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <rocksdb/c.h>

#include "ferry/json.h"
#include "ferry/mapping.h"
#include "ferry/projector.h"
#include "ferry/store.h"
#include "ferry/v1/change.pb-c.h"
#include "ferry/v1/state.pb-c.h"
#include "projector/keys.h"

static const char *MAPPING =
    "version: 1\n"
    "entities:\n"
    "  org:\n"
    "    endpoint: /orgs\n"
    "    source: Orgs\n"
    "    fields:\n"
    "      name: {column: Name, transform: [trim, upper]}\n"
    "  contact:\n"
    "    endpoint: /contacts\n"
    "    source: Contacts\n"
    "    filter: {all: [{column: IsArchived, not_equals: true}, {not: {column: Kind, in: [x]}}]}\n"
    "    fields:\n"
    "      name: {template: \"{First} {Last}\"}\n"
    "      score: {column: Score, transform: to_int}\n"
    "      suburb: {lookup: Suburbs, on: SuburbID, column: Name}\n"
    "      org: {ref: org, key: \"{OrgID}\"}\n"
    "      phones:\n"
    "        collect: Phones\n"
    "        on: ContactID\n"
    "        order_by: Position\n"
    "        fields:\n"
    "          number: {column: Number, transform: digits}\n"
    "          region: {lookup: Suburbs, on: SuburbID, column: Name}\n"
    "  address:\n"
    "    endpoint: /addresses\n"
    "    source: Contacts\n"
    "    filter: {column: Street, is_null: false}\n"
    "    fields:\n"
    "      street: Street\n"
    "      contact: {ref: contact, key: \"{_key}\"}\n"
    "  tag:\n"
    "    endpoint: /tags\n"
    "    source: Contacts\n"
    "    key: \"{Tag}\"\n"
    "    filter: {column: Tag, is_null: false}\n"
    "    fields:\n"
    "      label: {template: \"tag {Tag} of {_key}\"}\n";

typedef struct world {
  char dir[64];
  ferry_store *store;
  ferry_mapping *map;
} world;

static world W;

/* ------------------------------------------------------------- the model --- */

/* One legacy change as generated; the model keeps the rows it implies. */
typedef struct gen_change {
  const char *table;
  char key[16];
  int del;
  uint64_t version;
  json_t *row; /* upsert */
  char id[64];
} gen_change;

/* rows: {table: {key: {"v": version, "row": row|null}}} */
static void model_apply(json_t *rows, const gen_change *c) {
  json_t *t = json_object_get(rows, c->table);
  if (!t) json_object_set_new(rows, c->table, t = json_object());
  json_t *cur = json_object_get(t, c->key);
  if (cur && (uint64_t)json_integer_value(json_object_get(cur, "v")) >= c->version) return;
  json_object_set_new(t, c->key, json_pack("{s:I, s:O}", "v", (json_int_t)c->version, "row",
                                           c->del ? json_null() : c->row));
}

static ferry_status m_get_row(void *arg, const char *table, const char *key, json_t **row,
                              ferry_error *err) {
  (void)err;
  json_t *r = json_object_get(json_object_get(json_object_get(arg, table), key), "row");
  *row = r && !json_is_null(r) ? json_incref(r) : NULL;
  return FERRY_OK;
}

static ferry_status m_each_row(void *arg, const char *table, const char *column,
                               const char *value, ferry_row_fn fn, void *fnarg, ferry_error *err) {
  (void)err;
  const char *k;
  json_t *e;
  json_object_foreach(json_object_get(arg, table), k, e) {
    json_t *row = json_object_get(e, "row"), *v = json_object_get(row, column);
    if (json_is_null(row) || !v || json_is_null(v)) continue;
    char *text = ferry_value_text(v, NULL);
    int eq = strcmp(text, value) == 0;
    free(text);
    if (eq) {
      ferry_status st = fn(fnarg, k, row);
      if (st) return st;
    }
  }
  return FERRY_OK;
}

/* From scratch: {"entity/key": canonical payload} with the smallest root key owning a key. */
static json_t *model_desired(json_t *rows) {
  json_t *out = json_object(), *owner = json_object();
  ferry_row_source src = {rows, m_get_row, m_each_row};
  for (size_t e = 0; e < ferry_mapping_entity_count(W.map); e++) {
    const char *k;
    json_t *ent;
    json_object_foreach(json_object_get(rows, ferry_mapping_entity_source(W.map, e)), k, ent) {
      json_t *row = json_object_get(ent, "row");
      if (json_is_null(row)) continue;
      int passes = 0;
      char *ekey = NULL;
      json_t *payload = NULL;
      ferry_error err;
      if (ferry_mapping_derive(W.map, e, k, row, &src, &passes, &ekey, &payload, &err) != FERRY_OK)
        fail_msg("model derive failed: %s", err.msg);
      if (passes && ekey[0]) {
        char name[256];
        snprintf(name, sizeof name, "%s/%s", ferry_mapping_entity_name(W.map, e), ekey);
        const char *prev = json_string_value(json_object_get(owner, name));
        if (!prev || strcmp(k, prev) < 0) {
          json_object_set_new(owner, name, json_string(k));
          char *text = ferry_value_canonical(payload);
          json_object_set_new(out, name, json_string(text));
          free(text);
        }
      }
      free(ekey);
      json_decref(payload);
    }
  }
  json_decref(owner);
  return out;
}

/* What the projector holds: {"entity/key": payload} for live desired records. */
static json_t *store_desired(const char *customer, json_t *dirty_out) {
  json_t *out = json_object();
  ferry_kv_iter *it = NULL;
  ferry_error err;
  assert_int_equal(ferry_kv_iter_open(W.store, FERRY_CF_DESIRED, customer, NULL, 0, NULL, 0, &it, &err), FERRY_OK);
  const char *key, *val;
  size_t klen, vlen;
  while (ferry_kv_iter_next(it, &key, &klen, &val, &vlen) == 1) {
    const char *en, *ek;
    size_t el, ekl;
    assert_int_equal(ferry_key_entity_parse(key, klen, &en, &el, &ek, &ekl), 0);
    Ferry__V1__DesiredEntity *d = ferry__v1__desired_entity__unpack(NULL, vlen, (const uint8_t *)val);
    assert_non_null(d);
    if (!d->deleted) {
      char name[256];
      snprintf(name, sizeof name, "%.*s/%.*s", (int)el, en, (int)ekl, ek);
      json_object_set_new(out, name, json_string(d->payload));
    }
    ferry__v1__desired_entity__free_unpacked(d, NULL);
  }
  ferry_kv_iter_close(it);
  if (dirty_out) {
    assert_int_equal(ferry_kv_iter_open(W.store, FERRY_CF_DIRTY, customer, NULL, 0, NULL, 0, &it, &err), FERRY_OK);
    while (ferry_kv_iter_next(it, &key, &klen, &val, &vlen) == 1) {
      unsigned rank;
      const char *en, *ek;
      size_t el, ekl;
      assert_int_equal(ferry_key_dirty_parse(key, klen, &rank, &en, &el, &ek, &ekl), 0);
      char name[256];
      snprintf(name, sizeof name, "%.*s/%.*s", (int)el, en, (int)ekl, ek);
      json_object_set_new(dirty_out, name, json_true());
    }
    ferry_kv_iter_close(it);
  }
  return out;
}

/* Fails with the members (or elements) that differ, one a line. */
static void assert_same(json_t *want, json_t *got, const char *what, unsigned seed) {
  if (json_equal(want, got)) return;
  fprintf(stderr, "seed %u: %s differs\n", seed, what);
  if (json_is_object(want) && json_is_object(got)) {
    const char *k;
    json_t *v;
    json_object_foreach(want, k, v) {
      json_t *g = json_object_get(got, k);
      if (g && json_equal(v, g)) continue;
      char *a = ferry_json_dump(v, FERRY_JSON_SORTED), *b = g ? ferry_json_dump(g, FERRY_JSON_SORTED) : NULL;
      fprintf(stderr, "  %s: want %s\n  %*s   got %s\n", k, a, (int)strlen(k), "", b ? b : "(absent)");
      free(a);
      free(b);
    }
    json_object_foreach(got, k, v) if (!json_object_get(want, k)) fprintf(stderr, "  %s: unexpected\n", k);
  } else {
    for (size_t i = 0; i < json_array_size(want) || i < json_array_size(got); i++) {
      char *a = ferry_json_dump(json_array_get(want, i), FERRY_JSON_SORTED);
      char *b = ferry_json_dump(json_array_get(got, i), FERRY_JSON_SORTED);
      if (!a || !b || strcmp(a, b) != 0)
        fprintf(stderr, "  [%zu] want %s\n       got %s\n", i, a ? a : "-", b ? b : "-");
      free(a);
      free(b);
    }
  }
  fail_msg("seed %u: %s differs (details above)", seed, what);
}

/* --------------------------------------------------------- the generator --- */

/* Multiplies the generator's key ranges (1: a few keys per table, so changes
 * pile onto the same rows; more: many rows, most new when first folded). */
static unsigned SCALE = 1;

static unsigned rnd(unsigned *s) {
  *s = *s * 1103515245u + 12345u;
  return (*s >> 16) & 0x7fff;
}

static json_t *gen_row(unsigned *s, const char *table, const char *key) {
  if (strcmp(table, "Orgs") == 0)
    return json_pack("{s:s}", "Name", rnd(s) % 2 ? " acme " : "Globex");
  if (strcmp(table, "Suburbs") == 0)
    return json_pack("{s:s}", "Name", (const char *[]){"Newtown", "Glebe", "Ultimo"}[rnd(s) % 3]);
  if (strcmp(table, "Phones") == 0) {
    json_t *r = json_pack("{s:i, s:s, s:i}", "ContactID", (int)(rnd(s) % (6 * SCALE) + 1), "Number",
                          rnd(s) % 2 ? "(02) 555-0101" : "0400 000 111", "Position", (int)(rnd(s) % 3));
    if (rnd(s) % 2) json_object_set_new(r, "SuburbID", json_integer(rnd(s) % (4 * SCALE) + 1));
    if (rnd(s) % 5 == 0) json_object_set_new(r, "Position", json_null());
    return r;
  }
  json_t *r = json_pack("{s:s, s:s, s:b, s:s}", "First", key, "Last", rnd(s) % 2 ? "Lee" : "Ng",
                        "IsArchived", rnd(s) % 4 == 0, "Kind", rnd(s) % 6 == 0 ? "x" : "y");
  json_object_set_new(r, "Score", rnd(s) % 3 ? json_real((rnd(s) % 100) / 7.0) : json_string("12"));
  json_object_set_new(r, "SuburbID", rnd(s) % 4 ? json_integer(rnd(s) % (4 * SCALE) + 1) : json_null());
  json_object_set_new(r, "OrgID", json_integer(rnd(s) % (3 * SCALE) + 1));
  json_object_set_new(r, "Street", rnd(s) % 3 ? json_string("1 Main St") : json_null());
  json_object_set_new(r, "Tag", rnd(s) % 3 ? json_string((const char *[]){"a", "b", "c"}[rnd(s) % 3]) : json_null());
  return r;
}

/* Generates n changes; versions mostly increase per row, some are stale. */
static gen_change *gen_stream(unsigned seed, size_t n) {
  static const char *tables[] = {"Contacts", "Contacts", "Phones", "Phones", "Suburbs", "Orgs"};
  static const unsigned keys[] = {6, 6, 8, 8, 4, 3};
  gen_change *c = calloc(n, sizeof *c);
  json_t *versions = json_object();
  unsigned s = seed;
  for (size_t i = 0; i < n; i++) {
    unsigned t = rnd(&s) % 6;
    c[i].table = tables[t];
    snprintf(c[i].key, sizeof c[i].key, "%u", rnd(&s) % (keys[t] * SCALE) + 1);
    char vk[64];
    snprintf(vk, sizeof vk, "%s/%s", c[i].table, c[i].key);
    uint64_t v = (uint64_t)json_integer_value(json_object_get(versions, vk));
    if (v > 1 && rnd(&s) % 8 == 0) c[i].version = v - 1 - rnd(&s) % (v - 1); /* stale */
    else json_object_set_new(versions, vk, json_integer((json_int_t)(c[i].version = v + 1 + rnd(&s) % 2)));
    c[i].del = rnd(&s) % 5 == 0;
    if (!c[i].del) c[i].row = gen_row(&s, c[i].table, c[i].key);
    snprintf(c[i].id, sizeof c[i].id, "%s/%s/%llu/%zu", c[i].table, c[i].key,
             (unsigned long long)c[i].version, i);
  }
  json_decref(versions);
  return c;
}

static void free_stream(gen_change *c, size_t n) {
  for (size_t i = 0; i < n; i++) json_decref(c[i].row);
  free(c);
}

static Ferry__V1__Value *to_value(json_t *v) {
  Ferry__V1__Value *x = malloc(sizeof *x);
  ferry__v1__value__init(x);
  if (json_is_integer(v)) { x->kind_case = FERRY__V1__VALUE__KIND_INT_VALUE; x->int_value = json_integer_value(v); }
  else if (json_is_real(v)) { x->kind_case = FERRY__V1__VALUE__KIND_DOUBLE_VALUE; x->double_value = json_real_value(v); }
  else if (json_is_string(v)) { x->kind_case = FERRY__V1__VALUE__KIND_STRING_VALUE; x->string_value = (char *)json_string_value(v); }
  else if (json_is_boolean(v)) { x->kind_case = FERRY__V1__VALUE__KIND_BOOL_VALUE; x->bool_value = json_is_true(v); }
  else { x->kind_case = FERRY__V1__VALUE__KIND_NULL_VALUE; x->null_value = 1; }
  return x;
}

/* Appends changes [from, to) as one batch, plus a duplicate of an earlier one. */
static void append(const char *customer, gen_change *c, size_t from, size_t to) {
  size_t n = to - from + (from > 0);
  ferry_change_ref *refs = calloc(n, sizeof *refs);
  uint8_t **bufs = calloc(n, sizeof *bufs);
  for (size_t i = 0; i < n; i++) {
    gen_change *g = i < to - from ? &c[from + i] : &c[from - 1]; /* the last: a duplicate */
    Ferry__V1__Change ch = FERRY__V1__CHANGE__INIT;
    ch.table = (char *)g->table;
    ch.key = g->key;
    ch.op = g->del ? FERRY__V1__OP__OP_DELETE : FERRY__V1__OP__OP_UPSERT;
    ch.version = g->version;
    ch.id = g->id;
    size_t nc = g->row ? json_object_size(g->row) : 0, k = 0;
    Ferry__V1__Column *cols = calloc(nc ? nc : 1, sizeof *cols);
    Ferry__V1__Column **pcols = calloc(nc ? nc : 1, sizeof *pcols);
    const char *name;
    json_t *v;
    if (g->row)
      json_object_foreach(g->row, name, v) {
        ferry__v1__column__init(&cols[k]);
        cols[k].name = (char *)name;
        cols[k].value = to_value(v);
        pcols[k] = &cols[k];
        k++;
      }
    ch.row = pcols;
    ch.n_row = nc;
    bufs[i] = malloc(ferry__v1__change__get_packed_size(&ch));
    refs[i].pb_len = ferry__v1__change__pack(&ch, bufs[i]);
    refs[i].pb = bufs[i];
    refs[i].id = g->id;
    refs[i].id_len = strlen(g->id);
    for (k = 0; k < nc; k++) free(cols[k].value);
    free(cols);
    free(pcols);
  }
  ferry_append_result res;
  ferry_error err;
  assert_int_equal(ferry_store_append(W.store, customer, refs, n, &res, &err), FERRY_OK);
  assert_int_equal(res.duplicates, from > 0 ? 1 : 0);
  for (size_t i = 0; i < n; i++) free(bufs[i]);
  free(bufs);
  free(refs);
}

static ferry_projector *open_proj(const char *customer, size_t fold_batch) {
  ferry_projector *p = NULL;
  ferry_error err;
  ferry_projector_opts o = {NULL, NULL, fold_batch};
  if (ferry_projector_open(&p, W.store, W.map, customer, &o, false, &err)) fail_msg("%s", err.msg);
  return p;
}

static void fold(ferry_projector *p) {
  ferry_error err;
  if (ferry_projector_fold(p, NULL, NULL, NULL, &err)) fail_msg("fold: %s", err.msg);
}

/* ------------------------------------------------------------------ tests --- */

static int setup(void **state) {
  (void)state;
  ferry_error err;
  strcpy(W.dir, "/tmp/ferry-proj.XXXXXX");
  assert_non_null(mkdtemp(W.dir));
  assert_int_equal(ferry_store_open(&W.store, W.dir, FERRY_STORE_WRITE, &err), FERRY_OK);
  if (ferry_mapping_load_buffer(&W.map, "test-mapping.yaml", MAPPING, strlen(MAPPING), &err))
    fail_msg("mapping: %s", err.msg);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  ferry_store_close(W.store);
  ferry_mapping_free(W.map);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", W.dir);
  return system(cmd);
}

#define SEEDS 200
#define CHANGES 160

/* Checks customer's desired state and dirty set against the model of c[0, n). */
static void assert_matches_model(const char *customer, gen_change *c, size_t n, const char *what,
                                 unsigned seed) {
  json_t *rows = json_object();
  for (size_t k = 0; k < n; k++) model_apply(rows, &c[k]);
  json_t *want = model_desired(rows), *dirty = json_object();
  json_t *got = store_desired(customer, dirty);
  assert_same(want, got, what, seed);
  /* nothing was applied: exactly the desired entities are dirty */
  const char *k;
  json_t *v;
  json_object_foreach(want, k, v) json_object_set_new(want, k, json_true());
  assert_same(want, dirty, "dirty set", seed);
  json_decref(want);
  json_decref(got);
  json_decref(dirty);
  json_decref(rows);
}

/* Incremental folds in random batch sizes equal a from-scratch derive. */
static void test_incremental_equals_scratch(void **state) {
  (void)state;
  for (unsigned seed = 1; seed <= SEEDS; seed++) {
    char customer[32];
    snprintf(customer, sizeof customer, "prop%u", seed);
    gen_change *c = gen_stream(seed, CHANGES);
    unsigned s = seed * 7919u;
    ferry_projector *p = open_proj(customer, 1 + rnd(&s) % 40);
    size_t i = 0;
    while (i < CHANGES) {
      size_t n = 1 + rnd(&s) % 25;
      if (i + n > CHANGES) n = CHANGES - i;
      append(customer, c, i, i + n);
      i += n;
      if (rnd(&s) % 3 == 0 || i == CHANGES) fold(p); /* sometimes several appends per fold */
    }
    assert_matches_model(customer, c, CHANGES, "desired state", seed);
    ferry_projector_close(p);
    free_stream(c, CHANGES);
  }
}

/* A long fold into an empty projection (the first fold, a replay) answers
 * reads of keys no batch has written yet without the store (a write
 * filter, see proj_fold_to). Over many rows, changes that come back to a
 * row batches later, and fold batches of random sizes, it must give what
 * the model gives: then so must a long fold over the non-empty projection
 * (no filter), and a replay of everything (a filter again). */
static void test_long_first_fold_equals_scratch(void **state) {
  (void)state;
  enum { FIRST = 4000, MORE = 1500, LONG_SEEDS = 12 }; /* both over the 1,000 of a long fold */
  SCALE = 25;
  for (unsigned seed = 1; seed <= LONG_SEEDS; seed++) {
    char customer[32];
    snprintf(customer, sizeof customer, "long%u", seed);
    gen_change *c = gen_stream(seed + 5000, FIRST + MORE);
    unsigned s = seed;
    for (size_t i = 0; i < FIRST; i += 500) append(customer, c, i, i + 500);
    ferry_projector *p = open_proj(customer, 1 + rnd(&s) % 300);
    fold(p);
    assert_matches_model(customer, c, FIRST, "desired state after a first long fold", seed);
    append(customer, c, FIRST, FIRST + MORE);
    fold(p);
    assert_matches_model(customer, c, FIRST + MORE, "desired state after a second long fold", seed);
    ferry_error err;
    assert_int_equal(ferry_projector_replay(p, NULL, NULL, &err), FERRY_OK);
    assert_matches_model(customer, c, FIRST + MORE, "desired state after a replay", seed);
    ferry_projector_close(p);
    free_stream(c, FIRST + MORE);
  }
  SCALE = 1;
}

static int collect_plan(void *arg, const ferry_call *c) {
  json_t *o = json_pack("{s:i, s:s, s:s, s:O?}", "kind", (int)c->kind, "entity", c->entity, "key",
                        c->key, "body", c->body);
  json_array_append_new(arg, o);
  return 0;
}

static json_t *plan_of(ferry_projector *p) {
  json_t *a = json_array();
  ferry_error err;
  if (ferry_projector_plan(p, collect_plan, a, &err)) fail_msg("plan: %s", err.msg);
  return a;
}

/* Rewind to N equals a fresh projection of 1..N; replay leaves the plan as it was. */
static void test_rewind_and_replay(void **state) {
  (void)state;
  for (unsigned seed = 1; seed <= 30; seed++) {
    char customer[32], fresh[32];
    snprintf(customer, sizeof customer, "rw%u", seed);
    snprintf(fresh, sizeof fresh, "rwfresh%u", seed);
    gen_change *c = gen_stream(seed + 1000, CHANGES);
    unsigned s = seed;
    size_t n = 1 + rnd(&s) % (CHANGES - 1);
    append(customer, c, 0, CHANGES);
    ferry_projector *p = open_proj(customer, 17);
    fold(p);
    json_t *before = plan_of(p);
    ferry_error err;
    assert_int_equal(ferry_projector_replay(p, NULL, NULL, &err), FERRY_OK);
    json_t *after = plan_of(p);
    assert_same(before, after, "plan after replay", seed);

    /* the customer's log has no duplicates at the start, so seq == index + 1 */
    assert_int_equal(ferry_projector_rewind(p, n, true, NULL, NULL, &err), FERRY_OK);
    fold(p); /* held: folds nothing */
    json_t *rows = json_object();
    for (size_t k = 0; k < n; k++) model_apply(rows, &c[k]);
    json_t *want = model_desired(rows), *got = store_desired(customer, NULL);
    assert_same(want, got, "desired state after rewind", seed);
    append(fresh, c, 0, n);
    ferry_projector *q = open_proj(fresh, 5);
    fold(q);
    json_t *pf = plan_of(q), *pr = plan_of(p);
    assert_same(pf, pr, "plan after rewind vs fresh projection", seed);
    assert_int_equal(ferry_projector_resume(p, &err), FERRY_OK);
    fold(p);
    json_t *resumed = plan_of(p);
    assert_same(before, resumed, "plan after resume", seed);
    json_decref(before);
    json_decref(after);
    json_decref(want);
    json_decref(got);
    json_decref(rows);
    json_decref(pf);
    json_decref(pr);
    json_decref(resumed);
    ferry_projector_close(q);
    ferry_projector_close(p);
    free_stream(c, CHANGES);
  }
}

/* A projection built with one mapping refuses to work with another. */
static void test_mapping_change_refused(void **state) {
  (void)state;
  gen_change *c = gen_stream(99, 20);
  append("mapchg", c, 0, 20);
  ferry_projector *p = open_proj("mapchg", 0);
  fold(p);
  ferry_projector_close(p);
  const char *other = "version: 1\nentities:\n  org:\n    endpoint: /o\n    source: Orgs\n    fields: {n: Name}\n";
  ferry_mapping *m2 = NULL;
  ferry_error err;
  assert_int_equal(ferry_mapping_load_buffer(&m2, "other.yaml", other, strlen(other), &err), FERRY_OK);
  assert_int_equal(ferry_projector_open(&p, W.store, m2, "mapchg", NULL, false, &err), FERRY_EMAPPING_CHANGED);
  assert_non_null(strstr(err.msg, "ferry replay mapchg"));
  assert_int_equal(ferry_projector_open(&p, W.store, m2, "mapchg", NULL, true, &err), FERRY_OK);
  assert_int_equal(ferry_projector_replay(p, NULL, NULL, &err), FERRY_OK);
  ferry_projector_close(p);
  assert_int_equal(ferry_projector_open(&p, W.store, m2, "mapchg", NULL, false, &err), FERRY_OK);
  ferry_projector_close(p);
  ferry_mapping_free(m2);
  free_stream(c, 20);
}

typedef struct recorder {
  ferry_projector *p;
  unsigned n;
} recorder;

/* Records a planned call as the cloud accepting it. */
static int record_ok(void *arg, ferry_call **cp) {
  recorder *r = arg;
  const ferry_call *c = *cp;
  ferry_error err;
  char id[16];
  snprintf(id, sizeof id, "%u", ++r->n);
  ferry_call_result res = {FERRY_OUTCOME_OK, 201, id, "POST", c->endpoint, NULL, 1, 0};
  if (ferry_projector_record(r->p, c, &res, &err)) fail_msg("record: %s", err.msg);
  return 0;
}

/* Syncs every planned call, each accepted by the cloud, in one write group. */
static void sync_all_ok(recorder *r) {
  ferry_error err;
  assert_int_equal(ferry_projector_group_begin(r->p, &err), FERRY_OK);
  for (unsigned ph = 0; ph < ferry_projector_phases(r->p); ph++)
    assert_int_equal(ferry_projector_plan_phase(r->p, ph, NULL, record_ok, r, &err), FERRY_OK);
  assert_int_equal(ferry_projector_group_end(r->p, &err), FERRY_OK);
}

/* ferryd keeps a customer's projector open and syncs each change as it
 * comes: the dirty marks those syncs clear must not pile up as deletion
 * markers that every later plan steps over. */
static void test_cleared_marks_do_not_pile_up(void **state) {
  (void)state;
  enum { SYNCS = 600 };
  ferry_projector *p = open_proj("tidy", 0);
  recorder r = {p, 0};
  for (unsigned i = 1; i <= SYNCS; i++) {
    gen_change ch = {.table = "Orgs", .version = 1}; /* a new org each time: a mark of its own */
    snprintf(ch.key, sizeof ch.key, "%u", i);
    ch.row = json_pack("{s:s}", "Name", "org");
    snprintf(ch.id, sizeof ch.id, "tidy/%u", i);
    append("tidy", &ch, 0, 1);
    json_decref(ch.row);
    fold(p);
    sync_all_ok(&r);
  }
  assert_int_equal(r.n, SYNCS);
  rocksdb_perfcontext_t *pc = rocksdb_perfcontext_create();
  rocksdb_set_perf_level(rocksdb_enable_count);
  rocksdb_perfcontext_reset(pc);
  json_t *plan = plan_of(p);
  uint64_t stepped = rocksdb_perfcontext_metric(pc, rocksdb_internal_delete_skipped_count);
  rocksdb_set_perf_level(rocksdb_disable);
  rocksdb_perfcontext_destroy(pc);
  assert_int_equal(json_array_size(plan), 0);
  /* every sync cleared one mark; compaction after each 256 drops them, so a
   * plan steps over fewer than that, in each of the org's two phases */
  if (stepped >= 2 * 256) fail_msg("a plan stepped over %llu deletion markers", (unsigned long long)stepped);
  json_decref(plan);
  ferry_projector_close(p);
}

/* Appends n org changes as one batch: key i+1 at version, Name name. */
static void append_orgs(const char *customer, unsigned n, uint64_t version, const char *name) {
  gen_change *c = calloc(n, sizeof *c);
  for (unsigned i = 0; i < n; i++) {
    c[i].table = "Orgs";
    c[i].version = version;
    snprintf(c[i].key, sizeof c[i].key, "%u", i + 1);
    c[i].row = json_pack("{s:s}", "Name", name);
    snprintf(c[i].id, sizeof c[i].id, "%s/%u/%llu", customer, i + 1, (unsigned long long)version);
  }
  append(customer, c, 0, n);
  for (unsigned i = 0; i < n; i++) json_decref(c[i].row);
  free(c);
}

/* A long fold skips applied reads only for a customer never synced: after a
 * sync, changes undone in a later batch of one long fold leave nothing dirty. */
static void test_long_fold_after_sync_reads_applied(void **state) {
  (void)state;
  enum { ORGS = 1200 }; /* each step is a fold longer than the 1,000 that checks applied state */
  ferry_projector *p = open_proj("undo", 500);
  recorder r = {p, 0};
  append_orgs("undo", ORGS, 1, "org");
  fold(p);
  sync_all_ok(&r);
  assert_int_equal(r.n, ORGS);
  append_orgs("undo", ORGS, 2, "renamed"); /* folded in batches of 500: dirty, */
  append_orgs("undo", ORGS, 3, "org");     /* then clean again */
  fold(p);
  json_t *dirty = json_object();
  json_decref(store_desired("undo", dirty));
  if (json_object_size(dirty))
    fail_msg("%zu entities left dirty, though the cloud has them as they are",
             json_object_size(dirty));
  json_t *plan = plan_of(p);
  assert_int_equal(json_array_size(plan), 0);
  json_decref(plan);
  json_decref(dirty);
  ferry_projector_close(p);
}

#ifdef FERRY_HAVE_TCMALLOC
#include <gperftools/malloc_extension_c.h>

static size_t decommit_now(void) {
  size_t v = 99;
  assert_true(MallocExtension_GetNumericProperty("tcmalloc.aggressive_memory_decommit", &v));
  return v;
}

static void sample_decommit(void *arg, uint64_t done, uint64_t total) {
  (void)done, (void)total;
  size_t *seen = arg;
  if (decommit_now()) *seen = 1;
}
#endif

/* A long fold returns freed pages as it goes (the memory budget), and
 * leaves that off for what follows; a short fold never turns it on (a
 * single change would be 20% dearer). See ferry_store_bulk_memory_begin. */
static void test_long_fold_returns_memory(void **state) {
  (void)state;
#ifndef FERRY_HAVE_TCMALLOC
  skip(); /* glibc: a long fold trims after each batch instead */
#else
  ferry_error err;
  ferry_projector *p = open_proj("bulk", 1000);
  append_orgs("bulk", 12000, 1, "org");
  assert_int_equal(decommit_now(), 0);
  size_t seen = 0;
  assert_int_equal(ferry_projector_fold(p, sample_decommit, &seen, NULL, &err), FERRY_OK);
  assert_int_equal(seen, 1);
  assert_int_equal(decommit_now(), 0);
  append_orgs("bulk", 50, 2, "renamed");
  seen = 0;
  assert_int_equal(ferry_projector_fold(p, sample_decommit, &seen, NULL, &err), FERRY_OK);
  assert_int_equal(seen, 0);
  ferry_projector_close(p);
#endif
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_long_fold_returns_memory),
      cmocka_unit_test(test_long_fold_after_sync_reads_applied),
      cmocka_unit_test(test_cleared_marks_do_not_pile_up),
      cmocka_unit_test(test_incremental_equals_scratch),
      cmocka_unit_test(test_long_first_fold_equals_scratch),
      cmocka_unit_test(test_rewind_and_replay),
      cmocka_unit_test(test_mapping_change_refused),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
