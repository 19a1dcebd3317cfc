/*
 * Fuzz target for the mapping loader and evaluator: the input is a mapping
 * file. Whatever loads is derived, entity by entity, against a small fixed
 * set of rows of every value type (any table name finds the generic rows
 * under "*"), and each payload is serialised, hashed, walked for refs and
 * resolved, so the evaluator sees every expression the loader accepts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/mapping.h"

static const char *rows_json =
    "{\"*\": {"
    "  \"1\": {\"A\": 1, \"B\": \"x\", \"C\": null, \"D\": 4.0, \"E\": true, \"F\": \" Zo\\u00eb "
    "\","
    "         \"G\": -0.5, \"H\": \"42\", \"I\": \"1\", \"ContactID\": 1, \"Position\": 2},"
    "  \"2\": {\"A\": \"1\", \"B\": 2.5, \"C\": false, \"D\": 1e300, \"E\": \"\", \"F\": \"{x}\","
    "         \"G\": 9223372036854775807, \"ContactID\": \"1\", \"Position\": null},"
    "  \"x\": {\"A\": 1.0, \"B\": \"1\", \"ContactID\": 1.0, \"Position\": \"a\"}},"
    " \"Suburbs\": {\"7\": {\"Name\": \"Carlton\"}}}";

static json_t *rows;

static json_t *table_rows(const char *table) {
  json_t *t = json_object_get(rows, table);
  return t ? t : json_object_get(rows, "*");
}

static ferry_status get_row(void *arg, const char *table, const char *key, json_t **row,
                            ferry_error *err) {
  (void)arg;
  (void)err;
  json_t *r = json_object_get(table_rows(table), key);
  *row = r ? json_incref(r) : NULL;
  return FERRY_OK;
}

static ferry_status each_row(void *arg, const char *table, const char *column, const char *value,
                             ferry_row_fn fn, void *fnarg, ferry_error *err) {
  const char *key;
  json_t *row;
  (void)arg;
  (void)err;
  json_object_foreach(table_rows(table), key, row) {
    char *text = ferry_value_text(json_object_get(row, column), NULL);
    if (!text) return FERRY_ENOMEM;
    int match = strcmp(text, value) == 0;
    free(text);
    ferry_status st = match ? fn(fnarg, key, row) : FERRY_OK;
    if (st) return st;
  }
  return FERRY_OK;
}

static ferry_status count_ref(void *arg, const char *entity, const char *key) {
  (void)entity;
  (void)key;
  ++*(size_t *)arg;
  return FERRY_OK;
}

static ferry_status resolve_ref(void *arg, const char *entity, const char *key, json_t **id) {
  (void)arg;
  *id = key[0] ? json_string(entity) : NULL;
  return FERRY_OK;
}

static void check_payload(const json_t *payload) {
  char hex[33];
  size_t refs = 0;
  json_t *resolved = NULL;
  free(ferry_value_canonical(payload));
  ferry_value_hash(payload, hex);
  ferry_payload_refs(payload, count_ref, &refs);
  if (ferry_payload_resolve(payload, resolve_ref, NULL, &resolved) == FERRY_OK) {
    /* a resolved payload holds no markers */
    size_t left = 0;
    ferry_payload_refs(resolved, count_ref, &left);
    if (left) abort();
  }
  json_decref(resolved);
}

static void derive_all(const ferry_mapping *m) {
  ferry_row_source src = {.get_row = get_row, .each_row = each_row};
  const char *key;
  json_t *row;
  for (size_t i = 0; i < ferry_mapping_entity_count(m); i++) {
    json_object_foreach(table_rows(ferry_mapping_entity_source(m, i)), key, row) {
      int passes = 0, again = 0;
      char *ekey = NULL, *ekey2 = NULL;
      json_t *payload = NULL;
      ferry_error err;
      if (ferry_mapping_derive(m, i, key, row, &src, &passes, &ekey, &payload, &err) == FERRY_OK &&
          passes)
        check_payload(payload);
      /* the key alone must agree with the full derive */
      if (ferry_mapping_entity_key(m, i, key, row, &again, &ekey2, &err) == FERRY_OK &&
          (again != passes || (ekey && ekey2 && strcmp(ekey, ekey2) != 0)))
        abort();
      free(ekey);
      free(ekey2);
      json_decref(payload);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ferry_mapping *m = NULL;
  ferry_error err;
  if (!rows && !(rows = json_loads(rows_json, 0, NULL))) abort();
  if (ferry_mapping_load_buffer(&m, "fuzz.yaml", (const char *)data, size, &err) != FERRY_OK)
    return 0;
  const ferry_mapping_join *joins;
  size_t n;
  ferry_mapping_joins(m, &joins);
  ferry_mapping_tables(m, &n);
  if (strlen(ferry_mapping_hash(m)) != 32) abort();
  for (size_t i = 0; i < ferry_mapping_entity_count(m); i++) {
    const size_t *refs = ferry_mapping_entity_refs(m, i, &n);
    for (size_t k = 0; k < n; k++)
      if (refs[k] >= i) abort(); /* topological: referenced entities come first */
  }
  derive_all(m);
  ferry_mapping_free(m);
  return 0;
}
