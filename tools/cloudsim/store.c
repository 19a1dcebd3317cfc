/* ferry-cloudsim record store: collections, records and field indexes.
 *
 * DESIGN
 * Each collection holds its records in a jansson object keyed by the id's text ("42", or a uuid),
 * which jansson keeps as a hash table in insertion order: get, replace and delete by id are single
 * probes and listings come out in creation order. Collections are found by path through another
 * jansson object mapping the path to a slot in a plain array, so collection structs stay ordinary
 * C structs.
 *
 * Queries by field (?legacy_key=contact/42) must not scan 50,000 records, so the first query on a
 * field builds an index for that field: value text -> set of ids (a jansson object whose values
 * are the json null singleton, so a set member costs one hash entry and no allocation of its own).
 * Every write afterwards removes the record from each index under its old values and adds it under
 * its new ones. If memory runs out while doing so, the affected index is dropped instead of left
 * wrong; the next query on that field rebuilds it.
 */
#include "rng.h"
#include "store_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Shortest "%g" text that reads back as the same double, as JavaScript's String(x) does for
 * ordinary numbers, so ?price=1.5 finds 1.5 and ?ratio=0.1 finds 0.1. */
static void render_real(double d, char *buf) {
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, CS_RENDER_BUF, "%.*g", prec, d);
    if (strtod(buf, NULL) == d) return;
  }
}

const char *cs_render_text(const json_t *v, char *buf, char **owned) {
  const char *text = NULL;

  *owned = NULL;
  switch (json_typeof(v)) {
  case JSON_STRING: text = json_string_value(v); break;
  case JSON_INTEGER:
    snprintf(buf, CS_RENDER_BUF, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    text = buf;
    break;
  case JSON_REAL:
    render_real(json_real_value(v), buf);
    text = buf;
    break;
  case JSON_TRUE: text = "true"; break;
  case JSON_FALSE: text = "false"; break;
  case JSON_NULL: text = "null"; break;
  case JSON_OBJECT:
  case JSON_ARRAY:
    *owned = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    text = *owned;
    break;
  }
  return text;
}

/* ---- field indexes ------------------------------------------------------------------------ */

static int set_add(json_t *index, const char *value, const char *id) {
  json_t *set = json_object_get(index, value);
  if (!set) {
    set = json_object();
    if (json_object_set_new(index, value, set) != 0) return -1;
  }
  return json_object_set_new(set, id, json_null());
}

static void set_remove(json_t *index, const char *value, const char *id) {
  json_t *set = json_object_get(index, value);
  if (!set) return;
  json_object_del(set, id);
  /* Empty sets would pile up under a field whose values keep changing. */
  if (json_object_size(set) == 0) json_object_del(index, value);
}

/* Adds (add=1) or removes (add=0) rec, stored under id, in every index of c. */
static void index_record(cs_collection *c, const char *id, const json_t *rec, int add) {
  const char *field;
  json_t *index, *tmp;

  json_object_foreach_safe(c->indexes, tmp, field, index) {
    char buf[CS_RENDER_BUF], *owned = NULL;
    const json_t *v = json_object_get(rec, field);
    if (!v) continue;
    const char *text = cs_render_text(v, buf, &owned);
    if (!text) {
      json_object_del(c->indexes, field); /* rebuilt by the next query on it */
    } else if (!add) {
      set_remove(index, text, id);
    } else if (set_add(index, text, id) != 0) {
      json_object_del(c->indexes, field);
    }
    free(owned);
  }
}

/* The index on field, built from the records if this is the first query on it; NULL when out of
 * memory. */
static json_t *obtain_index(cs_collection *c, const char *field) {
  json_t *index = json_object_get(c->indexes, field);
  json_t *built = NULL;
  const char *id;
  json_t *rec;

  if (index) goto done;
  built = json_object();
  if (!built) goto done;
  json_object_foreach(c->records, id, rec) {
    char buf[CS_RENDER_BUF], *owned = NULL;
    const json_t *v = json_object_get(rec, field);
    if (!v) continue;
    const char *text = cs_render_text(v, buf, &owned);
    int rc = text ? set_add(built, text, id) : -1;
    free(owned);
    if (rc != 0) goto done;
  }
  if (json_object_set(c->indexes, field, built) != 0) goto done;
  index = built;
done:
  json_decref(built);
  return index;
}

/* ---- collections ------------------------------------------------------------------------- */

static void collection_free(cs_collection *c) {
  if (!c) return;
  json_decref(c->indexes);
  json_decref(c->records);
  free(c->path);
  free(c);
}

cs_status cs_store_create(cs_store **out, const char *id_field, cs_id_kind ids, uint64_t seed) {
  cs_status st = CS_ENOMEM;
  cs_store *s = calloc(1, sizeof *s);

  *out = NULL;
  if (!s) goto done;
  s->ids = ids;
  s->rng = seed;
  s->id_field = strdup(id_field);
  s->slots = json_object();
  s->idem = json_object();
  if (!s->id_field || !s->slots || !s->idem) goto done;
  *out = s;
  s = NULL;
  st = CS_OK;
done:
  cs_store_destroy(s);
  return st;
}

void cs_store_reset(cs_store *s) {
  for (size_t i = 0; i < s->ncolls; i++)
    collection_free(s->colls[i]);
  s->ncolls = 0;
  json_object_clear(s->slots);
  json_object_clear(s->idem);
}

void cs_store_destroy(cs_store *s) {
  if (!s) return;
  for (size_t i = 0; i < s->ncolls; i++)
    collection_free(s->colls[i]);
  free(s->colls);
  json_decref(s->idem);
  json_decref(s->slots);
  free(s->id_field);
  free(s);
}

cs_collection *cs_store_find(cs_store *s, const char *path) {
  json_t *slot = json_object_get(s->slots, path);
  return slot ? s->colls[json_integer_value(slot)] : NULL;
}

cs_collection *cs_store_obtain(cs_store *s, const char *path) {
  cs_collection *c = cs_store_find(s, path);
  cs_collection *made = NULL;

  if (c) goto done;
  if (s->ncolls == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 16;
    cs_collection **grown = realloc(s->colls, cap * sizeof *grown);
    if (!grown) goto done;
    s->colls = grown;
    s->cap = cap;
  }
  made = calloc(1, sizeof *made);
  if (!made) goto done;
  made->next_id = 1;
  made->path = strdup(path);
  made->records = json_object();
  made->indexes = json_object();
  if (!made->path || !made->records || !made->indexes) goto done;
  if (json_object_set_new(s->slots, path, json_integer((json_int_t)s->ncolls)) != 0) goto done;
  s->colls[s->ncolls++] = made;
  c = made;
  made = NULL;
done:
  collection_free(made);
  return c;
}

/* ---- records ------------------------------------------------------------------------------ */

/* A new id value for c, its text written to idbuf (40 bytes); NULL when out of memory. */
static json_t *new_id(cs_store *s, cs_collection *c, char *idbuf) {
  if (s->ids == CS_IDS_INT) {
    json_int_t n = c->next_id++;
    snprintf(idbuf, 40, "%" JSON_INTEGER_FORMAT, n);
    return json_integer(n);
  }
  uint64_t hi = cs_rng_next(&s->rng), lo = cs_rng_next(&s->rng);
  /* Version 4 (random) and the RFC 4122 variant, so the ids look like what real APIs hand out. */
  snprintf(idbuf, 40, "%08" PRIx32 "-%04" PRIx32 "-4%03" PRIx32 "-%04" PRIx32 "-%012" PRIx64,
           (uint32_t)(hi >> 32), (uint32_t)(hi >> 16) & 0xffff, (uint32_t)hi & 0xfff,
           (uint32_t)((lo >> 48) & 0x3fff) | 0x8000, (uint64_t)(lo & 0xffffffffffffULL));
  return json_string(idbuf);
}

cs_status cs_collection_insert_take(cs_store *s, cs_collection *c, json_t *body, json_t **rec) {
  cs_status st = CS_ENOMEM;
  char idbuf[40];
  json_t *id;

  /* Loaded state may hold ids this counter would make again; skip over them. */
  do {
    id = new_id(s, c, idbuf);
    if (!id) goto done;
    if (!json_object_get(c->records, idbuf)) break;
    json_decref(id);
  } while (1);
  if (json_object_set_new(body, s->id_field, id) != 0) goto done;
  if (json_object_set(c->records, idbuf, body) != 0) goto done;
  index_record(c, idbuf, body, 1);
  *rec = body;
  st = CS_OK;
done:
  json_decref(body); /* the collection holds the record now, or it is gone */
  return st;
}

cs_status cs_collection_put_loaded(cs_store *s, cs_collection *c, json_t *rec) {
  cs_status st = CS_EBADSTATE;
  char buf[CS_RENDER_BUF], *owned = NULL;
  const json_t *id = json_object_get(rec, s->id_field);
  const char *text = NULL;

  if (!json_is_object(rec) || !id || !(json_is_string(id) || json_is_integer(id))) goto done;
  if (json_is_integer(id) && json_integer_value(id) >= c->next_id)
    c->next_id = json_integer_value(id) + 1;
  text = cs_render_text(id, buf, &owned);
  st = CS_ENOMEM;
  if (!text || json_object_set(c->records, text, rec) != 0) goto done;
  index_record(c, text, rec, 1);
  st = CS_OK;
done:
  free(owned);
  json_decref(rec);
  return st;
}

json_t *cs_collection_get(cs_collection *c, const char *id) {
  return json_object_get(c->records, id);
}

cs_status cs_collection_patch(cs_store *s, cs_collection *c, const char *id, json_t *body,
                              json_t **rec) {
  cs_status st = CS_ENOTFOUND;
  json_t *r = json_object_get(c->records, id);
  json_t *idv = NULL;

  if (!r) goto done;
  idv = json_incref(json_object_get(r, s->id_field));
  index_record(c, id, r, 0);
  st = json_object_update(r, body) == 0 ? CS_OK : CS_ENOMEM;
  /* The id is the record's address; a body cannot move it. */
  if (idv && json_object_set(r, s->id_field, idv) != 0) st = CS_ENOMEM;
  index_record(c, id, r, 1);
  *rec = r;
done:
  json_decref(idv);
  return st;
}

cs_status cs_collection_replace_take(cs_store *s, cs_collection *c, const char *id, json_t *body,
                                     json_t **rec) {
  cs_status st = CS_ENOTFOUND;
  json_t *old = json_object_get(c->records, id);
  json_t *idv;

  if (!old) goto done;
  st = CS_ENOMEM;
  idv = json_object_get(old, s->id_field);
  if (idv && json_object_set(body, s->id_field, idv) != 0) goto done;
  index_record(c, id, old, 0);
  if (json_object_set(c->records, id, body) != 0) {
    index_record(c, id, old, 1);
    goto done;
  }
  index_record(c, id, body, 1);
  *rec = body;
  st = CS_OK;
done:
  json_decref(body);
  return st;
}

cs_status cs_collection_delete(cs_collection *c, const char *id) {
  json_t *r = json_object_get(c->records, id);
  if (!r) return CS_ENOTFOUND;
  index_record(c, id, r, 0);
  json_object_del(c->records, id);
  return CS_OK;
}

/* Whether rec satisfies every condition. */
static int matches(const json_t *rec, const cs_cond *conds, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char buf[CS_RENDER_BUF], *owned = NULL;
    const json_t *v = json_object_get(rec, conds[i].field);
    const char *text = v ? cs_render_text(v, buf, &owned) : NULL;
    int same = text && strcmp(text, conds[i].value) == 0;
    free(owned);
    if (!same) return 0;
  }
  return 1;
}

cs_status cs_collection_find(cs_store *s, cs_collection *c, const cs_cond *conds, size_t n,
                             json_t **out) {
  cs_status st = CS_ENOMEM;
  json_t *arr = json_array();
  json_t *rec, *set, *index, *unused;
  const char *id;

  if (!arr) goto done;
  if (n == 0) {
    json_object_foreach(c->records, id, rec) {
      if (json_array_append(arr, rec) != 0) goto done;
    }
  } else if (strcmp(conds[0].field, s->id_field) == 0) {
    /* The records are keyed by the id's text already. */
    rec = json_object_get(c->records, conds[0].value);
    if (rec && matches(rec, conds + 1, n - 1) && json_array_append(arr, rec) != 0) goto done;
  } else {
    if (!(index = obtain_index(c, conds[0].field))) goto done;
    /* No set: no record has that value (json_object_foreach on NULL runs zero times). */
    set = json_object_get(index, conds[0].value);
    json_object_foreach(set, id, unused) {
      rec = json_object_get(c->records, id);
      if (rec && matches(rec, conds + 1, n - 1) && json_array_append(arr, rec) != 0) goto done;
    }
  }
  *out = arr;
  arr = NULL;
  st = CS_OK;
done:
  json_decref(arr);
  return st;
}
