/* Internals of the record store shared by store.c (records and indexes) and state.c (the state
 * file, /_dump and the idempotency table). Nothing outside those two files includes this.
 */
#ifndef CLOUDSIM_STORE_INT_H
#define CLOUDSIM_STORE_INT_H

#include "store.h"

struct cs_collection {
  char *path;
  json_t *records;    /* id text -> record object, in insertion order */
  json_t *indexes;    /* field -> { value text -> { id text -> null } } */
  json_int_t next_id; /* next integer id; ids are never reused, even after a delete */
};

struct cs_store {
  char *id_field;
  cs_id_kind ids;
  uint64_t rng;          /* uuid generator state */
  json_t *slots;         /* collection path -> integer slot in colls */
  cs_collection **colls; /* in creation order, so dumps are stable */
  size_t ncolls, cap;
  json_t *idem; /* "account\nkey" -> {"request","status","response"} */
};

/* Stores rec (reference taken) under its own id text, raising next_id past an integer id. Used
 * when loading state, where records arrive with their ids. */
cs_status cs_collection_put_loaded(cs_store *s, cs_collection *c, json_t *rec);

#endif
