/*
 * The mapping (SPEC §2): the YAML file that decides which cloud entities a
 * customer's legacy rows become, and the evaluator that derives an entity's
 * key and payload from a root row.
 *
 * The module knows nothing of storage. The evaluator reads the rows it needs
 * beyond the root row (lookups, collects) through a ferry_row_source that the
 * caller supplies (the fold plugs in its mirror), and it never resolves
 * references: the cloud id of a referenced entity is only known when the
 * plan is applied, so a `ref` becomes the marker {"$ref": "ENTITY/KEY"} in the
 * payload, and the applier swaps markers for cloud ids with
 * ferry_payload_resolve. Mapping field names may not start with '$', so a
 * one-member object {"$ref": "..."} in a payload is always a marker.
 *
 * Values are jansson json_t. Rows are JSON objects of column -> null, bool,
 * integer, real or string. Text rendering, comparison and canonical JSON
 * follow one set of rules, given with the functions below, so every module
 * that renders a value as text (the fold's join index, for one) agrees.
 *
 * Thread safety: a loaded mapping is immutable; any number of threads may
 * derive from it at once.
 */
#ifndef FERRY_MAPPING_H
#define FERRY_MAPPING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ferry/ferry.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Limits. A mapping file is read whole; text built from rows (templates,
 * canonical JSON) is capped so a hostile row cannot exhaust memory. */
#define FERRY_MAPPING_MAX_BYTES (16u * 1024 * 1024)
#define FERRY_MAPPING_MAX_DEPTH 64 /* YAML nesting */
#define FERRY_MAPPING_MAX_ENTITIES 1000
#define FERRY_MAPPING_MAX_EXPRS 10000      /* field expressions, collects' included */
#define FERRY_ENTITY_NAME_MAX 128          /* entity names: [A-Za-z0-9_.-]+ */
#define FERRY_TEXT_MAX (64u * 1024 * 1024) /* one rendered template or text value */
#define FERRY_CANONICAL_MAX (256u * 1024 * 1024)

typedef struct ferry_mapping ferry_mapping;

/* ---- loading -------------------------------------------------------------- */

/*
 * Loads and validates the mapping at path. On success *out is the caller's
 * (ferry_mapping_free). On failure *out is NULL and err names the file, the
 * line and the problem ("mapping.yaml:12: entities.contact.fields.email.transform:
 * unknown transform 'lowercase'"): FERRY_EMAPPING for an invalid mapping,
 * FERRY_EIO when the file cannot be read, FERRY_ETOOBIG past
 * FERRY_MAPPING_MAX_BYTES, FERRY_ENOMEM.
 */
ferry_status ferry_mapping_load(ferry_mapping **out, const char *path, ferry_error *err);

/* As ferry_mapping_load, from memory; name stands for the file in messages.
 * buf need not be NUL-terminated and is not kept. */
ferry_status ferry_mapping_load_buffer(ferry_mapping **out, const char *name, const char *buf,
                                       size_t len, ferry_error *err);

/* Frees a mapping; accepts NULL. */
void ferry_mapping_free(ferry_mapping *m);

/* The name it was loaded under (the path, or load_buffer's name). */
const char *ferry_mapping_name(const ferry_mapping *m);

/*
 * Hex XXH3-128 (32 lowercase digits) of the mapping's canonical form: the
 * parsed YAML as canonical JSON plus the entity order. Comments, layout,
 * quoting and key order do not change it; anything that can change what is
 * derived does. The projection stores it to notice a changed mapping.
 */
const char *ferry_mapping_hash(const ferry_mapping *m);

/* ---- entities --------------------------------------------------------------- */

/*
 * Entities are numbered 0..count-1 in topological order: an entity comes
 * after every entity it references, ties keep file order. So index order is
 * create order and reverse index order is delete order; the index is the
 * entity type's rank.
 */
size_t ferry_mapping_entity_count(const ferry_mapping *m);
const char *ferry_mapping_entity_name(const ferry_mapping *m, size_t i);
const char *ferry_mapping_entity_endpoint(const ferry_mapping *m, size_t i);
const char *ferry_mapping_entity_source(const ferry_mapping *m, size_t i);
/* Whether entity i's key is its root row's key ("{_key}"): then no two
 * roots can claim one entity. */
bool ferry_mapping_entity_key_is_root(const ferry_mapping *m, size_t i);
/* Whether entity i, rooted on a row that changed from old_row to new_row
 * (both live), can come out different: false only when every column it
 * reads of the root row (key, filter, fields, lookup and ref keys) is the
 * same in both. A collect reads the root's key, which a change keeps. */
bool ferry_mapping_root_change_matters(const ferry_mapping *m, size_t i, const json_t *old_row,
                                       const json_t *new_row);
/* The index of the entity called name, or SIZE_MAX. */
size_t ferry_mapping_entity_find(const ferry_mapping *m, const char *name);
/* The line where entity i maps a payload field called name, or 0 if it maps
 * none (the projector refuses fields that would collide with the ones it
 * adds itself, like the external key). */
size_t ferry_mapping_entity_field_line(const ferry_mapping *m, size_t i, const char *name);
/* The entities that entity i references (each once, ascending); *n their count.
 * Every one is < i. The array belongs to the mapping. */
const size_t *ferry_mapping_entity_refs(const ferry_mapping *m, size_t i, size_t *n);

/* ---- joins: what the fold must index and follow ----------------------------- */

typedef enum ferry_join_kind {
  FERRY_JOIN_LOOKUP = 1, /* from.column rendered as text is a key of table */
  FERRY_JOIN_COLLECT = 2 /* table.column rendered as text is a key of from */
} ferry_join_kind;

#define FERRY_JOIN_NONE SIZE_MAX

typedef struct ferry_mapping_join {
  size_t entity; /* the entity whose derivation follows the join */
  ferry_join_kind kind;
  const char *from;   /* rows that start the join: the entity's source, or for
                         a lookup inside a collect, the collected table */
  const char *table;  /* the looked-up / collected table */
  const char *column; /* LOOKUP: column C of from; COLLECT: column C of table */
  size_t parent;      /* a lookup inside a collect: the index of that collect
                         join in this array; otherwise FERRY_JOIN_NONE */
} ferry_mapping_join;

/*
 * Every join of every entity, each once, entity by entity in index order.
 * To find the roots a changed row touches, the fold needs an index of
 * LOOKUP.from rows by LOOKUP.column (a changed looked-up row has key k: the
 * roots with column = k) and of COLLECT.table rows by COLLECT.column (to list
 * the children of a root; a changed child names its parent itself). For a
 * lookup inside a collect, the rows found are children: follow parent. The
 * array belongs to the mapping; *out may be NULL when the count is 0.
 */
size_t ferry_mapping_joins(const ferry_mapping *m, const ferry_mapping_join **out);

/* Every table the mapping names (sources, lookups, collects), sorted
 * bytewise, each once. The array belongs to the mapping. */
const char *const *ferry_mapping_tables(const ferry_mapping *m, size_t *n);

/* ---- the rows the evaluator reads ------------------------------------------- */

/* Called once per matching row; row is borrowed for the call. A status other
 * than FERRY_OK stops the walk and must be returned by each_row. */
typedef ferry_status (*ferry_row_fn)(void *fnarg, const char *key, json_t *row);

/*
 * The mirror as the evaluator sees it. Every row the evaluator reads beyond
 * the root row passes through these two calls, so a source can record an
 * entity's constituents as it derives it.
 */
typedef struct ferry_row_source {
  void *arg;
  /* Sets *row to the live row of table with key, as a new reference, or to
   * NULL when there is none (never written, or deleted). */
  ferry_status (*get_row)(void *arg, const char *table, const char *key, json_t **row,
                          ferry_error *err);
  /* Calls fn for each live row of table whose column, rendered as text
   * (ferry_value_text), equals value, in any order. */
  ferry_status (*each_row)(void *arg, const char *table, const char *column, const char *value,
                           ferry_row_fn fn, void *fnarg, ferry_error *err);
} ferry_row_source;

/* ---- deriving --------------------------------------------------------------- */

/*
 * Derives entity i from the root row (root_key, root_row); root_row is a JSON
 * object (a row of the entity's source table) and is only read.
 *
 * *passes is set to 0 when the filter rejects the row: there is no entity,
 * and *entity_key and *payload are set to NULL. Otherwise *passes is 1,
 * *entity_key is the rendered key template (malloc'd, the caller frees it) and
 * *payload a new JSON object (the caller's reference) of the mapped fields,
 * refs as {"$ref": "ENTITY/KEY"} markers. The payload may share scalar
 * values with the rows it was built from; treat it as read-only.
 * entity_key and payload may be NULL when not wanted; src may be NULL only if
 * the entity has no lookup or collect.
 *
 * Errors: FERRY_EINVAL for bad arguments or a key that renders with a NUL
 * byte, whatever status the row source returns, FERRY_ETOOBIG past
 * FERRY_TEXT_MAX, FERRY_ENOMEM. On error *passes is 0 and *entity_key and
 * *payload are NULL.
 */
ferry_status ferry_mapping_derive(const ferry_mapping *m, size_t i, const char *root_key,
                                  const json_t *root_row, const ferry_row_source *src, int *passes,
                                  char **entity_key, json_t **payload, ferry_error *err);

/* Only the filter and the entity key: what a row image (the old image of a
 * changed row, say) yields, without reading any other row. As derive. */
ferry_status ferry_mapping_entity_key(const ferry_mapping *m, size_t i, const char *root_key,
                                      const json_t *root_row, int *passes, char **entity_key,
                                      ferry_error *err);

/* ---- values: text, comparison, canonical JSON ---------------------------- */

/*
 * A value rendered as text, as templates render it: null -> "", booleans
 * "true"/"false", strings as they are, integers in decimal, reals with no
 * fractional part in decimal (4.0 -> "4", -0.0 -> "0", 1e300 -> its exact
 * 301-digit value), other reals in the shortest of %.15g/%.16g/%.17g that
 * reads back to the same double (0.1 -> "0.1", 1e-07 -> "1e-07"). Arrays and
 * objects (never in a valid row) render as canonical JSON. Returns malloc'd
 * text (NUL-terminated; *len, if not NULL, gets its length, since a string may
 * hold NUL bytes) or NULL when out of memory or past FERRY_TEXT_MAX.
 */
char *ferry_value_text(const json_t *v, size_t *len);

/* 1 if a and b are the same JSON value: numbers by numeric value (1 equals
 * 1.0, exactly, even past 2^53), strings bytewise, "1" never equals 1;
 * arrays element-wise, objects member-wise. NULL counts as null. */
int ferry_value_equal(const json_t *a, const json_t *b);

/* A total order (<0, 0, >0) consistent with ferry_value_equal: null < false <
 * true < numbers (numerically, exactly) < strings (bytewise) < arrays <
 * objects. This is collect's order_by order. */
int ferry_value_compare(const json_t *a, const json_t *b);

/*
 * Canonical JSON of v: compact, object keys sorted bytewise, strings with
 * only '"', '\\' and control characters escaped (\b \f \n \r \t, others
 * \u00XX; UTF-8 kept as is), numbers rendered as ferry_value_text renders
 * them except that an integral real outside int64 uses the shortest round-trip
 * form (1e+300), so that any JSON parser reads the text back. Equal values
 * (ferry_value_equal) give equal text. Returns malloc'd text or NULL when out
 * of memory or past FERRY_CANONICAL_MAX.
 */
char *ferry_value_canonical(const json_t *v);

/* XXH3-128 of ferry_value_canonical(v) as 32 lowercase hex digits and a NUL,
 * into hex. FERRY_ENOMEM or FERRY_ETOOBIG on failure. */
ferry_status ferry_value_hash(const json_t *v, char hex[33]);

/* ---- payload references ----------------------------------------------------- */

/* A new marker {"$ref": "entity/key"}, or NULL when out of memory. The
 * key's bytes are kept as they are. */
json_t *ferry_payload_ref_new(const char *entity, const char *key);

/* 1 if v is a well-formed marker (an object whose only member is "$ref", a
 * string "ENTITY/KEY" with a valid entity name); then *target (if not NULL)
 * points into v at "ENTITY/KEY". */
int ferry_payload_ref_target(const json_t *v, const char **target);

/* Called for each marker; entity and key are borrowed for the call. A status
 * other than FERRY_OK stops the walk and is returned. */
typedef ferry_status (*ferry_ref_fn)(void *arg, const char *entity, const char *key);

/* Calls fn for every marker in payload, at any depth (arrays in order,
 * object members in the object's own order). */
ferry_status ferry_payload_refs(const json_t *payload, ferry_ref_fn fn, void *arg);

/* Sets *id to the cloud id of (entity, key) as a new reference, or to NULL
 * while that entity does not exist in the cloud. */
typedef ferry_status (*ferry_ref_resolver)(void *arg, const char *entity, const char *key,
                                           json_t **id);

/* *out becomes a copy of payload (new arrays and objects; scalars shared)
 * with every marker replaced by its resolved id, or by null where the
 * resolver gives none. The resolver's status, or FERRY_ENOMEM, on failure
 * (then *out is NULL). */
ferry_status ferry_payload_resolve(const json_t *payload, ferry_ref_resolver fn, void *arg,
                                   json_t **out);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_MAPPING_H */
