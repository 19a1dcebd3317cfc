/* ferry-cloudsim record store: collections of JSON records, their field indexes, the idempotency
 * table, and the state file.
 *
 * A collection is named by its full URL path ("/accounts/77/contacts"). Records are jansson
 * objects held in a per-collection object keyed by the id rendered as text, so a lookup by id is
 * one hash probe. Equality queries (?field=value) go through a per-collection index on that field,
 * built the first time the field is queried and kept up to date by every write after that.
 *
 * Ownership: the store owns every record, collection and index. Functions returning a json_t
 * return a borrowed reference valid until the next write to the store unless they say "new".
 * Out of memory is reported as CS_ENOMEM, never an abort.
 */
#ifndef CLOUDSIM_STORE_H
#define CLOUDSIM_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "options.h"

typedef enum {
  CS_OK = 0,
  CS_ENOTFOUND = 1, /* no such collection or record */
  CS_ENOMEM = 2,
  CS_EBADSTATE = 3, /* the state file is not one this program wrote */
  CS_EIO = 4,       /* reading or writing the state file failed */
} cs_status;

typedef struct cs_store cs_store;
typedef struct cs_collection cs_collection;

/* One field=value condition of a query; both strings are borrowed. */
typedef struct {
  const char *field;
  const char *value;
} cs_cond;

/* Creates an empty store. id_field is copied. seed drives uuid generation. */
cs_status cs_store_create(cs_store **out, const char *id_field, cs_id_kind ids, uint64_t seed);
/* Frees the store and everything in it; accepts NULL. */
void cs_store_destroy(cs_store *s);
/* Drops every collection, record and idempotency entry. */
void cs_store_reset(cs_store *s);

/* The collection at path (NUL-terminated, already normalised), or NULL if none was ever made. */
cs_collection *cs_store_find(cs_store *s, const char *path);
/* The collection at path, made empty if new; NULL only when out of memory. */
cs_collection *cs_store_obtain(cs_store *s, const char *path);

/* Gives a new id to body (a JSON object whose reference this call takes, even on failure), stores
 * it and sets *rec to the stored record (borrowed). */
cs_status cs_collection_insert_take(cs_store *s, cs_collection *c, json_t *body, json_t **rec);
/* The record with that id text, or NULL. */
json_t *cs_collection_get(cs_collection *c, const char *id);
/* Merges body's top-level fields into the record (its id is kept); *rec is the result. */
cs_status cs_collection_patch(cs_store *s, cs_collection *c, const char *id, json_t *body,
                              json_t **rec);
/* Replaces the record by body (reference taken, even on failure), keeping its id. */
cs_status cs_collection_replace_take(cs_store *s, cs_collection *c, const char *id, json_t *body,
                                     json_t **rec);
cs_status cs_collection_delete(cs_collection *c, const char *id);
/* Sets *out to a new array of the records matching every condition (all records when n is 0),
 * in insertion order. A field's value matches when its text rendering equals the condition's
 * value: strings as they are, numbers as JavaScript prints them, true/false/null as words,
 * arrays and objects as compact JSON with sorted keys. Records without the field never match. */
cs_status cs_collection_find(cs_store *s, cs_collection *c, const cs_cond *conds, size_t n,
                             json_t **out);

/* New object {collection path: [records...]} for /_dump. */
json_t *cs_store_dump(const cs_store *s);
/* New object {collection path: record count} for /_stats; *total gets the sum. */
json_t *cs_store_counts(const cs_store *s, size_t *total);

/* Idempotency: scope is "account\nkey"; request is whatever identifies the request (method,
 * path, body). A first use returns CS_IDEM_NEW; a repeat of the same request returns
 * CS_IDEM_REPLAY with the stored answer (borrowed, valid until the next write); the same scope
 * with a different request returns CS_IDEM_CONFLICT. */
typedef enum { CS_IDEM_NEW, CS_IDEM_REPLAY, CS_IDEM_CONFLICT } cs_idem;
cs_idem cs_store_idem_lookup(cs_store *s, const char *scope, const char *request, size_t req_len,
                             int *status, const char **body, size_t *body_len);
cs_status cs_store_idem_remember(cs_store *s, const char *scope, const char *request,
                                 size_t req_len, int status, const char *body, size_t body_len);

/* State file: cs_store_load reads path into an empty store (a missing file is CS_OK and leaves
 * the store empty); cs_store_save writes it atomically (a temporary file, fsync, rename). err
 * (errlen bytes) receives a one-line reason on failure. */
cs_status cs_store_load(cs_store *s, const char *path, char *err, size_t errlen);
cs_status cs_store_save(const cs_store *s, const char *path, char *err, size_t errlen);

/* Writes v's text rendering (see cs_collection_find) and returns it: either v's own string,
 * buf (at least CS_RENDER_BUF bytes), or a new string stored in *owned for the caller to free.
 * NULL when out of memory. */
#define CS_RENDER_BUF 32
const char *cs_render_text(const json_t *v, char *buf, char **owned);

#endif
