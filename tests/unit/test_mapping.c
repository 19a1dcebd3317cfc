/*
 * Unit tests of the mapping module (SPEC §2): loading and its errors (each
 * with its line), every expression, transform and filter (with nulls, type
 * mismatches and UTF-8), text rendering of numbers, collect ordering, lookup's
 * null cases, refs, canonical JSON, and every allocation failure.
 *
 * The evaluator reads rows through a tiny in-memory row source: a JSON
 * object of table -> key -> row.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ferry/mapping.h"
#include "projector/mapping_internal.h"

/* ---- an in-memory row source -------------------------------------------------- */

typedef struct memdb {
  json_t *tables;    /* table -> key -> row */
  int reads;         /* rows handed out, to see what derive touched */
  ferry_status fail; /* returned by every call when set */
  int lie;           /* each_row reports every row, matching or not */
} memdb;

static ferry_status mem_get(void *arg, const char *table, const char *key, json_t **row,
                            ferry_error *err) {
  memdb *db = arg;
  if (db->fail) return ferry_error_set(err, db->fail, "memdb: injected failure");
  json_t *r = json_object_get(json_object_get(db->tables, table), key);
  *row = r ? json_incref(r) : NULL;
  db->reads += r != NULL;
  return FERRY_OK;
}

static ferry_status mem_each(void *arg, const char *table, const char *column, const char *value,
                             ferry_row_fn fn, void *fnarg, ferry_error *err) {
  memdb *db = arg;
  const char *key;
  json_t *row;
  if (db->fail) return ferry_error_set(err, db->fail, "memdb: injected failure");
  json_object_foreach(json_object_get(db->tables, table), key, row) {
    char *text = ferry_value_text(json_object_get(row, column), NULL);
    if (!text) return FERRY_ENOMEM;
    int match = db->lie || strcmp(text, value) == 0;
    free(text);
    if (!match) continue;
    db->reads++;
    ferry_status st = fn(fnarg, key, row);
    if (st) return st;
  }
  return FERRY_OK;
}

static json_t *parse(const char *text) {
  json_error_t jerr;
  json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  if (!v) fail_msg("bad JSON in test: %s: %s", text, jerr.text);
  return v;
}

static memdb db_of(const char *text) {
  memdb db = {.tables = parse(text)};
  return db;
}

static ferry_row_source source_of(memdb *db) {
  ferry_row_source s = {.arg = db, .get_row = mem_get, .each_row = mem_each};
  return s;
}

/* ---- helpers ----------------------------------------------------------------- */

static ferry_mapping *load_ok(const char *yaml) {
  ferry_mapping *m = NULL;
  ferry_error err;
  ferry_error_clear(&err);
  ferry_status st = ferry_mapping_load_buffer(&m, "t.yaml", yaml, strlen(yaml), &err);
  if (st != FERRY_OK) fail_msg("load failed: %s\n%s", err.msg, yaml);
  return m;
}

static void load_fails(const char *yaml, const char *want) {
  ferry_mapping *m = NULL;
  ferry_error err;
  ferry_error_clear(&err);
  ferry_status st = ferry_mapping_load_buffer(&m, "t.yaml", yaml, strlen(yaml), &err);
  if (st != FERRY_EMAPPING || m != NULL || !strstr(err.msg, want))
    fail_msg("want an error containing \"%s\", got status %d: \"%s\" for\n%s", want, st, err.msg,
             yaml);
}

/* A one-entity mapping whose field f is expr; the fields start on line 7. */
static char *one_field(const char *expr) {
  static char buf[4096];
  snprintf(buf, sizeof buf,
           "version: 1\n"
           "entities:\n"
           "  e:\n"
           "    endpoint: /e\n"
           "    source: T\n"
           "    fields:\n"
           "      f: %s\n",
           expr);
  return buf;
}

/* The value of field f (expr) for root row (key "k1", row_json) against db. */
static json_t *field_value(const char *expr, const char *row_json, memdb *db) {
  ferry_mapping *m = load_ok(one_field(expr));
  json_t *row = parse(row_json), *payload = NULL;
  ferry_row_source src = source_of(db);
  int passes = -1;
  char *key = NULL;
  ferry_error err;
  ferry_status st =
      ferry_mapping_derive(m, 0, "k1", row, db ? &src : NULL, &passes, &key, &payload, &err);
  if (st != FERRY_OK) fail_msg("derive failed: %s", err.msg);
  assert_int_equal(passes, 1);
  json_t *v = json_incref(json_object_get(payload, "f"));
  assert_non_null(v);
  json_decref(payload);
  json_decref(row);
  free(key);
  ferry_mapping_free(m);
  return v;
}

/* Field f must equal want exactly: same JSON type (4 is not 4.0 here). */
static void expect(const char *expr, const char *row_json, memdb *db, const char *want) {
  json_t *v = field_value(expr, row_json, db), *w = parse(want);
  if (!json_equal(v, w)) {
    char *got = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    fail_msg("%s on %s: want %s, got %s", expr, row_json, want, got);
  }
  json_decref(w);
  json_decref(v);
}

static void expect_text(const char *value_json, const char *want) {
  json_t *v = parse(value_json);
  size_t len = 0;
  char *t = ferry_value_text(v, &len);
  assert_non_null(t);
  if (strcmp(t, want) != 0) fail_msg("text of %s: want \"%s\", got \"%s\"", value_json, want, t);
  assert_int_equal(len, strlen(want));
  free(t);
  json_decref(v);
}

static void expect_canonical(const json_t *v, const char *want) {
  char *c = ferry_value_canonical(v);
  assert_non_null(c);
  if (strcmp(c, want) != 0) fail_msg("canonical: want %s, got %s", want, c);
  free(c);
}

static char *read_example(void) {
  const char *dir = getenv("FERRY_SOURCE_DIR");
  static char path[1024];
  snprintf(path, sizeof path, "%s/examples/mapping.yaml", dir ? dir : ".");
  return path;
}

/* ---- loading ----------------------------------------------------------------- */

static const char *demo_rows =
    "{\"Contacts\": {"
    "  \"42\": {\"ContactID\":42,\"FirstName\":\"Ann\",\"Surname\":\"Lee\","
    "           \"Email\":\"  ANN@X.COM \",\"IsArchived\":false,\"SuburbID\":7,"
    "           \"Street\":\"1 Main St\"},"
    "  \"43\": {\"ContactID\":43,\"FirstName\":\"Bo\",\"IsArchived\":true,\"Street\":null}},"
    " \"Suburbs\": {\"7\": {\"Name\":\"Carlton\"}},"
    " \"ContactPhones\": {"
    "  \"p1\": {\"ContactID\":42,\"Number\":\"(03) "
    "9555-1234\",\"PhoneType\":\"home\",\"Position\":2},"
    "  \"p2\": {\"ContactID\":42,\"Number\":\"+61 400 000 "
    "000\",\"PhoneType\":\"mobile\",\"Position\":1},"
    "  \"p3\": {\"ContactID\":43,\"Number\":\"1\",\"PhoneType\":\"home\",\"Position\":1}}}";

static void test_example(void **state) {
  (void)state;
  ferry_mapping *m = NULL;
  ferry_error err;
  assert_int_equal(ferry_mapping_load(&m, read_example(), &err), FERRY_OK);
  assert_int_equal(ferry_mapping_entity_count(m), 2);
  assert_string_equal(ferry_mapping_entity_name(m, 0), "contact");
  assert_string_equal(ferry_mapping_entity_name(m, 1), "address");
  assert_string_equal(ferry_mapping_entity_endpoint(m, 1), "/addresses");
  assert_string_equal(ferry_mapping_entity_source(m, 1), "Contacts");
  assert_int_equal(ferry_mapping_entity_find(m, "address"), 1);
  assert_int_equal(ferry_mapping_entity_find(m, "nope"), SIZE_MAX);
  size_t n;
  const size_t *refs = ferry_mapping_entity_refs(m, 1, &n);
  assert_int_equal(n, 1);
  assert_int_equal(refs[0], 0);
  assert_int_equal(strlen(ferry_mapping_hash(m)), 32);

  const char *const *tables = ferry_mapping_tables(m, &n);
  assert_int_equal(n, 3);
  assert_string_equal(tables[0], "ContactPhones");
  assert_string_equal(tables[1], "Contacts");
  assert_string_equal(tables[2], "Suburbs");

  const ferry_mapping_join *j;
  assert_int_equal(ferry_mapping_joins(m, &j), 2);
  assert_int_equal(j[0].kind, FERRY_JOIN_LOOKUP);
  assert_string_equal(j[0].from, "Contacts");
  assert_string_equal(j[0].table, "Suburbs");
  assert_string_equal(j[0].column, "SuburbID");
  assert_int_equal(j[1].kind, FERRY_JOIN_COLLECT);
  assert_string_equal(j[1].table, "ContactPhones");
  assert_string_equal(j[1].column, "ContactID");
  assert_int_equal(j[1].parent, FERRY_JOIN_NONE);

  memdb db = db_of(demo_rows);
  ferry_row_source src = source_of(&db);
  json_t *root = json_object_get(json_object_get(db.tables, "Contacts"), "42");
  int passes;
  char *key;
  json_t *payload;
  assert_int_equal(ferry_mapping_derive(m, 0, "42", root, &src, &passes, &key, &payload, &err),
                   FERRY_OK);
  assert_int_equal(passes, 1);
  assert_string_equal(key, "42");
  expect_canonical(payload, "{\"display_name\":\"Ann Lee\",\"email\":\"ann@x.com\","
                            "\"first_name\":\"Ann\",\"phones\":[{\"kind\":\"mobile\",\"number\":"
                            "\"61400000000\"},{\"kind\":\"home\",\"number\":\"0395551234\"}],"
                            "\"source\":\"legacy\",\"suburb\":\"Carlton\"}");
  free(key);
  json_decref(payload);

  assert_int_equal(ferry_mapping_derive(m, 1, "42", root, &src, &passes, &key, &payload, &err),
                   FERRY_OK);
  expect_canonical(payload, "{\"contact_id\":{\"$ref\":\"contact/42\"},\"street\":\"1 Main St\"}");
  free(key);
  json_decref(payload);

  /* Bo is archived and has no street: neither entity */
  root = json_object_get(json_object_get(db.tables, "Contacts"), "43");
  for (size_t i = 0; i < 2; i++) {
    assert_int_equal(ferry_mapping_derive(m, i, "43", root, &src, &passes, &key, &payload, &err),
                     FERRY_OK);
    assert_int_equal(passes, 0);
    assert_null(key);
    assert_null(payload);
  }
  json_decref(db.tables);
  ferry_mapping_free(m);
}

static void test_hash(void **state) {
  (void)state;
  ferry_mapping *a =
      load_ok("version: 1\nentities:\n  e: {endpoint: /e, source: T, fields: {x: A}}\n");
  ferry_mapping *b = load_ok("# a comment\nentities:\n  e:\n    fields:\n      x: 'A'\n"
                             "    source: \"T\"\n    endpoint: /e\nversion: 1\n");
  ferry_mapping *c =
      load_ok("version: 1\nentities:\n  e: {endpoint: /e, source: T, fields: {x: B}}\n");
  assert_string_equal(ferry_mapping_hash(a), ferry_mapping_hash(b));
  assert_string_not_equal(ferry_mapping_hash(a), ferry_mapping_hash(c));
  assert_string_equal(ferry_mapping_name(a), "t.yaml");
  ferry_mapping_free(a);
  ferry_mapping_free(b);
  ferry_mapping_free(c);
  ferry_mapping_free(NULL);
}

static void test_topological_order(void **state) {
  (void)state;
  ferry_mapping *m = load_ok("version: 1\n"
                             "entities:\n"
                             "  a: {endpoint: /a, source: T, fields: {b: {ref: b}, c: {ref: c}}}\n"
                             "  d: {endpoint: /d, source: T, fields: {x: X}}\n"
                             "  b: {endpoint: /b, source: T, fields: {c: {ref: c, key: '{C}'}}}\n"
                             "  c: {endpoint: /c, source: T, fields: {x: X}}\n");
  const char *want[] = {"d", "c", "b", "a"};
  for (size_t i = 0; i < 4; i++)
    assert_string_equal(ferry_mapping_entity_name(m, i), want[i]);
  size_t n;
  const size_t *refs = ferry_mapping_entity_refs(m, 3, &n);
  assert_int_equal(n, 2);
  assert_int_equal(refs[0], 1);
  assert_int_equal(refs[1], 2);
  /* markers still name the right entity after renumbering */
  json_t *row = parse("{\"C\": 5}"), *payload;
  int passes;
  ferry_error err;
  assert_int_equal(ferry_mapping_derive(m, 3, "r", row, NULL, &passes, NULL, &payload, &err), 0);
  expect_canonical(payload, "{\"b\":{\"$ref\":\"b/r\"},\"c\":{\"$ref\":\"c/r\"}}");
  json_decref(payload);
  assert_int_equal(ferry_mapping_derive(m, 2, "r", row, NULL, &passes, NULL, &payload, &err), 0);
  expect_canonical(payload, "{\"c\":{\"$ref\":\"c/5\"}}");
  json_decref(payload);
  json_decref(row);
  ferry_mapping_free(m);
}

typedef struct load_case {
  const char *yaml;
  const char *want;
} load_case;

#define BASE "version: 1\nentities:\n  e:\n    endpoint: /e\n    source: T\n    fields:\n"

static const load_case load_errors[] = {
    {"", "t.yaml:1: the file is empty"},
    {"version: 1\nentities: [\n", "t.yaml:3: YAML syntax error"},
    {"version: 1\n  bad: indent\n", "t.yaml:2: YAML syntax error"},
    {"version: 1\n---\nversion: 1\n", "t.yaml:2: more than one YAML document"},
    {"- 1\n", "t.yaml:1: expected a mapping with version and entities"},
    {"entities: {}\n", "t.yaml:1: missing version"},
    {"version: 2\nentities: {}\n", "t.yaml:1: version: unsupported version '2'"},
    {"version: '1'\nentities: {}\n", "t.yaml:1: version: unsupported version '1'"},
    {"version: 1\n", "t.yaml:1: missing entities"},
    {"version: 1\nentities: {}\n", "t.yaml:2: entities: no entities"},
    {"version: 1\nentities:\n", "t.yaml:2: entities: expected a mapping of entities, got null"},
    {"version: 1\nextra: 1\nentities: {}\n", "t.yaml:2: unknown key 'extra'"},
    {"version: 1\nversion: 1\n", "t.yaml:2: duplicate key 'version'"},
    {"version: 1\nentities:\n  e: {endpoint: /e, source: T, fields: {a: A, b: B, a: C}}\n",
     "t.yaml:3: duplicate key 'a'"},
    {"version: 1\nentities: &x {}\nother: *x\n", "t.yaml:3: YAML aliases are not supported"},
    {"version: !!int 1\n", "t.yaml:1: unsupported YAML tag"},
    {"version: 1\nentities:\n  e:\n    source: T\n    fields: {}\n",
     "t.yaml:3: entities.e: missing endpoint"},
    {"version: 1\nentities:\n  e:\n    endpoint: /e\n    fields: {}\n",
     "t.yaml:3: entities.e: missing source"},
    {"version: 1\nentities:\n  e:\n    endpoint: /e\n    source: T\n",
     "t.yaml:3: entities.e: missing fields"},
    {"version: 1\nentities:\n  e:\n    endpoint: e\n",
     "t.yaml:4: entities.e: endpoint 'e' must start with '/'"},
    {"version: 1\nentities:\n  e:\n    endpoint: /e\n    source: 'Bad Table'\n",
     "t.yaml:5: entities.e: 'Bad Table' is not a table name"},
    {"version: 1\nentities:\n  e:\n    endpoint: /e\n    source: 12\n",
     "t.yaml:5: entities.e: expected a table name, got an integer"},
    {"version: 1\nentities:\n  e:\n    endpoint: /e\n    sauce: T\n",
     "t.yaml:5: entities.e: unknown key 'sauce' (an entity takes endpoint, source, key, filter, "
     "fields)"},
    {"version: 1\nentities:\n  e/x: {}\n", "t.yaml:3: entities.e/x: 'e/x' is not an entity name"},
    {"version: 1\nentities:\n  e: [1]\n",
     "t.yaml:3: entities.e: expected an entity mapping, got a list"},
    {"version: 1\nentities:\n  e:\n    endpoint: /e\n    source: T\n    key: \"{Id\"\n    fields: "
     "{}\n",
     "t.yaml:6: entities.e.key: unterminated '{'"},
    {BASE "      f: {template: \"a {B\"}\n",
     "t.yaml:7: entities.e.fields.f.template: unterminated '{'"},
    {BASE "      f: {template: \"a {}\"}\n",
     "t.yaml:7: entities.e.fields.f.template: empty placeholder"},
    {BASE "      f: {template: \"a {b{c}\"}\n",
     "t.yaml:7: entities.e.fields.f.template: '{' inside a placeholder"},
    {BASE "      f: {template: 5}\n",
     "t.yaml:7: entities.e.fields.f.template: expected a template string, got an integer"},
    {BASE "      f: {column: Email, transform: lowercase}\n",
     "t.yaml:7: entities.e.fields.f.transform: unknown transform 'lowercase'"},
    {BASE
     "      f:\n        column: Email\n        transform:\n          - trim\n          - nope\n",
     "t.yaml:11: entities.e.fields.f.transform: unknown transform 'nope'"},
    {BASE "      f: {column: Email, transform: [trim, [lower]]}\n",
     "t.yaml:7: entities.e.fields.f.transform: expected a transform name, got a list"},
    {BASE "      f: {const: x, transform: trim}\n",
     "t.yaml:7: entities.e.fields.f: unknown key 'transform' (a const takes const)"},
    {BASE "      f: {const: [1]}\n",
     "t.yaml:7: entities.e.fields.f.const: a const must be a scalar"},
    {BASE "      f: {const: .inf}\n",
     "t.yaml:7: entities.e.fields.f.const: .inf is not a JSON number"},
    {BASE "      f: {colum: A}\n",
     "t.yaml:7: entities.e.fields.f: an expression needs one of column"},
    {BASE "      f: {column: A, colour: red}\n",
     "t.yaml:7: entities.e.fields.f: unknown key 'colour' (a column takes column, transform)"},
    {BASE "      f: {column: A, template: '{B}'}\n",
     "unknown key 'column' (a template takes template, transform)"},
    {BASE "      f: 12\n", "t.yaml:7: entities.e.fields.f: expected a column name or an expression "
                           "mapping, got an integer"},
    {BASE "      f: ''\n",
     "t.yaml:7: entities.e.fields.f: expected a column name, got an empty string"},
    {BASE "      f: [A]\n",
     "t.yaml:7: entities.e.fields.f: expected a column name or an expression mapping, got a list"},
    {BASE "      $f: A\n", "t.yaml:7: entities.e.fields.$f: field name '$f' starts with '$'"},
    {BASE "      f: {lookup: S, on: C}\n",
     "t.yaml:7: entities.e.fields.f: a lookup needs 'column'"},
    {BASE "      f: {lookup: S, column: N}\n",
     "t.yaml:7: entities.e.fields.f: a lookup needs 'on'"},
    {BASE "      f: {lookup: S, on: C, column: N, order_by: X}\n",
     "unknown key 'order_by' (a lookup takes lookup, on, column, transform)"},
    {BASE "      f: {collect: P, on: C}\n",
     "t.yaml:7: entities.e.fields.f: a collect needs 'fields'"},
    {BASE "      f: {collect: P, fields: {}}\n",
     "t.yaml:7: entities.e.fields.f: a collect needs 'on'"},
    {BASE "      f: {collect: P, on: C, fields: {x: X}, transform: trim}\n",
     "unknown key 'transform' (a collect takes"},
    {BASE "      f:\n        collect: P\n        on: C\n        fields:\n          g: {collect: Q, "
          "on: D, fields: {}}\n",
     "t.yaml:11: entities.e.fields.f.fields.g: collect inside collect is not allowed"},
    {BASE "      f: {ref: nope}\n", "t.yaml:7: entities.e.fields.f.ref: unknown entity 'nope'"},
    {BASE "      f:\n        collect: P\n        on: C\n        fields: {g: {ref: other}}\n",
     "t.yaml:10: entities.e.fields.f.fields.g.ref: unknown entity 'other'"},
    {BASE "      f: {ref: e, key: '{x'}\n", "t.yaml:7: entities.e.fields.f.key: unterminated '{'"},
    {BASE "      f: {ref: e}\n", "t.yaml:7: entities.e: reference cycle: e -> e"},
    {"version: 1\nentities:\n"
     "  a: {endpoint: /a, source: T, fields: {x: X}}\n"
     "  b: {endpoint: /b, source: T, fields: {c: {ref: c}}}\n"
     "  c: {endpoint: /c, source: T, fields: {d: {ref: d}, a: {ref: a}}}\n"
     "  d: {endpoint: /d, source: T, fields: {b: {ref: b}}}\n",
     "t.yaml:4: entities.b: reference cycle: b -> c -> d -> b"},
    {"version: 1\nentities:\n  e:\n    endpoint: /e\n    source: T\n    filter: {column: A}\n    "
     "fields: {}\n",
     "t.yaml:6: entities.e.filter: a filter on a column needs equals, not_equals, is_null or in"},
    {"version: 1\nentities:\n  e:\n    endpoint: /e\n    source: T\n    filter: {column: A, "
     "equals: 1, in: [1]}\n",
     "t.yaml:6: entities.e.filter: a filter takes one of"},
    {"version: 1\nentities:\n  e:\n    endpoint: /e\n    source: T\n    filter: {column: A, "
     "is_null: yes}\n",
     "t.yaml:6: entities.e.filter.is_null: expected true or false, got a string"},
    {"version: 1\nentities:\n  e:\n    endpoint: /e\n    source: T\n    filter: {column: A, in: "
     "1}\n",
     "t.yaml:6: entities.e.filter.in: expected a list, got an integer"},
    {"version: 1\nentities:\n  e:\n    endpoint: /e\n    source: T\n    filter: {column: A, in: "
     "[1, [2]]}\n",
     "t.yaml:6: entities.e.filter.in: expected a scalar to compare with, got a list"},
    {"version: 1\nentities:\n  e:\n    endpoint: /e\n    source: T\n    filter: {column: A, "
     "equals: {a: 1}}\n",
     "t.yaml:6: entities.e.filter.equals: expected a scalar to compare with, got a mapping"},
    {"version: 1\nentities:\n  e:\n    endpoint: /e\n    source: T\n    filter: {column: A, "
     "matches: x}\n",
     "t.yaml:6: entities.e.filter: unknown key 'matches'"},
    {"version: 1\nentities:\n  e:\n    endpoint: /e\n    source: T\n    filter:\n      all:\n"
     "        - {column: A, equals: 1}\n        - {colum: B}\n",
     "t.yaml:9: entities.e.filter.all[1]: a filter needs column, all, any or not"},
    {"version: 1\nentities:\n  e:\n    endpoint: /e\n    source: T\n    filter: {not: {column: A, "
     "is_null: true}, any: []}\n",
     "t.yaml:6: entities.e.filter: unknown key 'not' (an any filter takes any)"},
    {"version: 1\nentities:\n  e:\n    endpoint: /e\n    source: T\n    filter: {any: {column: "
     "A}}\n",
     "t.yaml:6: entities.e.filter.any: expected a list of filters, got a mapping"},
    {"version: 1\nentities:\n  e:\n    endpoint: /e\n    source: T\n    filter: []\n",
     "t.yaml:6: entities.e.filter: expected a filter mapping, got a list"},
    {"version: 1\nentities:\n  ? [a]\n  : 1\n", "t.yaml:3: a mapping key must be a plain string"},
    {"version: \"\\0\"\n", "t.yaml:1: a NUL byte in a string"},
    {"version: 1\nentities: \xff\n", "t.yaml:2: YAML syntax error"},
};

static void test_load_errors(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof load_errors / sizeof load_errors[0]; i++)
    load_fails(load_errors[i].yaml, load_errors[i].want);
}

static void test_load_depth(void **state) {
  (void)state;
  char yaml[4096] = "version: 1\nentities:\n  e:\n    endpoint: /e\n    source: T\n    filter: ";
  for (int i = 0; i < 70; i++)
    strcat(yaml, "{not: ");
  strcat(yaml, "{column: A, is_null: true}");
  for (int i = 0; i < 70; i++)
    strcat(yaml, "}");
  strcat(yaml, "\n    fields: {}\n");
  load_fails(yaml, "t.yaml:6: nested deeper than 64 levels");

  /* 60 levels of not are fine, and each flips the verdict */
  char ok[4096] = "version: 1\nentities:\n  e:\n    endpoint: /e\n    source: T\n    filter: ";
  for (int i = 0; i < 59; i++)
    strcat(ok, "{not: ");
  strcat(ok, "{column: A, is_null: true}");
  for (int i = 0; i < 59; i++)
    strcat(ok, "}");
  strcat(ok, "\n    fields: {}\n");
  ferry_mapping *m = load_ok(ok);
  json_t *row = parse("{}");
  int passes;
  ferry_error err;
  assert_int_equal(ferry_mapping_entity_key(m, 0, "k", row, &passes, NULL, &err), FERRY_OK);
  assert_int_equal(passes, 0); /* odd number of nots over a true test */
  json_decref(row);
  ferry_mapping_free(m);
}

static void test_load_limits(void **state) {
  (void)state;
  size_t cap = 64 * 1024;
  char *yaml = malloc(cap);
  size_t len = (size_t)snprintf(yaml, cap, "version: 1\nentities:\n");
  for (int i = 0; i <= FERRY_MAPPING_MAX_ENTITIES; i++)
    len += (size_t)snprintf(yaml + len, cap - len, "  e%d: {endpoint: /e, source: T, fields: {}}\n",
                            i);
  load_fails(yaml, "t.yaml:3: entities: more than 1000 entities");
  yaml = realloc(yaml, cap = 512 * 1024);
  len = (size_t)snprintf(yaml, cap,
                         "version: 1\nentities:\n  e:\n    endpoint: /e\n"
                         "    source: T\n    fields:\n");
  for (int i = 0; i < FERRY_MAPPING_MAX_EXPRS; i++)
    len += (size_t)snprintf(yaml + len, cap - len, "      f%d: A\n", i);
  ferry_mapping *m = load_ok(yaml);
  ferry_mapping_free(m);
  snprintf(yaml + len, cap - len, "      last: A\n");
  load_fails(yaml, "entities.e.fields.last: more than 10000 field expressions");
  free(yaml);
}

static void test_load_file_errors(void **state) {
  (void)state;
  ferry_mapping *m = (ferry_mapping *)1;
  ferry_error err;
  assert_int_equal(ferry_mapping_load(&m, "/nonexistent/mapping.yaml", &err), FERRY_EIO);
  assert_null(m);
  assert_non_null(strstr(err.msg, "/nonexistent/mapping.yaml: cannot open"));
  assert_int_equal(ferry_mapping_load(&m, "/", &err), FERRY_EIO);
  assert_int_equal(ferry_mapping_load_buffer(&m, "big", "x", FERRY_MAPPING_MAX_BYTES + 1, &err),
                   FERRY_ETOOBIG);
}

static void test_yaml_scalars(void **state) {
  (void)state;
  memdb db = db_of("{}");
  expect("{const: 42}", "{}", &db, "42");
  expect("{const: -0x10}", "{}", &db, "\"-0x10\""); /* core schema: no signed hex */
  expect("{const: 0x10}", "{}", &db, "16");
  expect("{const: 0o17}", "{}", &db, "15");
  expect("{const: 4.5}", "{}", &db, "4.5");
  expect("{const: 1e3}", "{}", &db, "1000.0");
  expect("{const: '42'}", "{}", &db, "\"42\"");
  expect("{const: !!str 42}", "{}", &db, "\"42\"");
  expect("{const: true}", "{}", &db, "true");
  expect("{const: yes}", "{}", &db, "\"yes\""); /* YAML 1.2: not a boolean */
  expect("{const: null}", "{}", &db, "null");
  expect("{const: ~}", "{}", &db, "null");
  expect("{const: }", "{}", &db, "null");
  expect("{const: 99999999999999999999}", "{}", &db, "1e20");
  expect("{const: -9223372036854775808}", "{}", &db, "-9223372036854775808");
  expect("{const: legacy}", "{}", &db, "\"legacy\"");
  expect("{const: \"Zoë\"}", "{}", &db, "\"Zoë\"");
  json_decref(db.tables);
}

/* ---- expressions -------------------------------------------------------------- */

static void test_column(void **state) {
  (void)state;
  expect("A", "{\"A\": \"x\"}", NULL, "\"x\"");
  expect("A", "{}", NULL, "null");
  expect("A", "{\"A\": null}", NULL, "null");
  expect("{column: A}", "{\"A\": 4.0}", NULL, "4.0");
  expect("{column: A}", "{\"A\": false}", NULL, "false");
  expect("'Straße'", "{\"Straße\": \"ü\"}", NULL, "\"ü\"");
  expect("_key", "{}", NULL, "null"); /* only templates know _key */
}

static void test_template(void **state) {
  (void)state;
  const char *row = "{\"F\": \"Ann\", \"S\": \"Lee\", \"N\": null, \"I\": 42, \"R\": 4.0, "
                    "\"X\": 0.1, \"B\": true, \"U\": \"Zoë\"}";
  expect("{template: '{F} {S}'}", row, NULL, "\"Ann Lee\"");
  expect("{template: '{F}{N}|{Missing}|'}", row, NULL, "\"Ann||\"");
  expect("{template: '{I}/{R}/{X}/{B}'}", row, NULL, "\"42/4/0.1/true\"");
  expect("{template: 'id-{_key}'}", row, NULL, "\"id-k1\"");
  expect("{template: '{{literal}} {{{F}}} }'}", row, NULL, "\"{literal} {Ann} }\"");
  expect("{template: '{U}!'}", row, NULL, "\"Zoë!\"");
  expect("{template: ''}", row, NULL, "\"\"");
  expect("{template: 'plain'}", row, NULL, "\"plain\"");
  expect("{template: '{F}', transform: upper}", row, NULL, "\"ANN\"");
}

static void test_text_rendering(void **state) {
  (void)state;
  expect_text("null", "");
  expect_text("true", "true");
  expect_text("false", "false");
  expect_text("\"s\"", "s");
  expect_text("0", "0");
  expect_text("-17", "-17");
  expect_text("9223372036854775807", "9223372036854775807");
  expect_text("-9223372036854775808", "-9223372036854775808");
  expect_text("4.0", "4");
  expect_text("-0.0", "0");
  expect_text("0.1", "0.1");
  expect_text("-2.5", "-2.5");
  expect_text("0.30000000000000004", "0.30000000000000004");
  expect_text("1e-7", "1e-07");
  expect_text("123456.789", "123456.789");
  expect_text("1e15", "1000000000000000");
  expect_text("9007199254740993.0", "9007199254740992"); /* the double it parses to */
  expect_text("1e20", "100000000000000000000");
  expect_text("-1e20", "-100000000000000000000");
  /* no fractional part: decimal, its exact value (301 digits) */
  json_t *big = json_real(1e300);
  char *t = ferry_value_text(big, NULL);
  assert_int_equal(strlen(t), 301);
  assert_memory_equal(t, "10000000000000000525", 20);
  assert_true(strtod(t, NULL) == 1e300);
  free(t);
  json_decref(big);
  /* a number that is not integral: shortest form that reads back */
  json_t *third = json_real(1.0 / 3.0);
  t = ferry_value_text(third, NULL);
  assert_string_equal(t, "0.3333333333333333");
  assert_true(strtod(t, NULL) == 1.0 / 3.0);
  free(t);
  json_decref(third);
  /* strings keep NUL bytes; the length says so */
  json_t *nul = json_stringn("a\0b", 3);
  size_t len;
  t = ferry_value_text(nul, &len);
  assert_int_equal(len, 3);
  assert_memory_equal(t, "a\0b", 4);
  free(t);
  json_decref(nul);
  expect_text("[1, \"a\"]", "[1,\"a\"]");
}

static void test_const(void **state) {
  (void)state;
  expect("{const: legacy}", "{}", NULL, "\"legacy\"");
  expect("{const: 7}", "{}", NULL, "7");
  expect("{const: 7.25}", "{}", NULL, "7.25");
  expect("{const: false}", "{}", NULL, "false");
  expect("{const: null}", "{}", NULL, "null");
}

static void test_transforms(void **state) {
  (void)state;
  const char *row = "{\"S\": \" \\t Ann Lee \\n\", \"U\": \" Zoë ÉCOLE \", \"E\": \"\", "
                    "\"N\": null, \"I\": 42, \"R\": -4.7, \"B\": true, \"P\": \"(03) 9555-1234\"}";
  expect("{column: S, transform: trim}", row, NULL, "\"Ann Lee\"");
  expect("{column: U, transform: trim}", row, NULL, "\"Zoë ÉCOLE\"");
  expect("{column: U, transform: [trim, lower]}", row, NULL, "\"zoë École\"");
  expect("{column: U, transform: [trim, upper]}", row, NULL, "\"ZOë ÉCOLE\"");
  expect("{column: I, transform: [trim, lower, upper]}", row, NULL, "42");
  expect("{column: B, transform: upper}", row, NULL, "true");
  expect("{column: N, transform: [trim, to_string, digits, to_int]}", row, NULL, "null");
  expect("{column: Missing, transform: to_string}", row, NULL, "null");
  expect("{column: I, transform: to_string}", row, NULL, "\"42\"");
  expect("{column: R, transform: to_string}", row, NULL, "\"-4.7\"");
  expect("{column: B, transform: to_string}", row, NULL, "\"true\"");
  expect("{column: S, transform: to_string}", row, NULL, "\" \\t Ann Lee \\n\"");
  expect("{column: E, transform: null_if_empty}", row, NULL, "null");
  expect("{column: S, transform: null_if_empty}", row, NULL, "\" \\t Ann Lee \\n\"");
  expect("{column: I, transform: null_if_empty}", row, NULL, "42");
  expect("{column: E, transform: [trim, null_if_empty]}", "{\"E\": \"   \"}", NULL, "null");
  expect("{column: P, transform: digits}", row, NULL, "\"0395551234\"");
  expect("{column: R, transform: digits}", row, NULL, "\"47\"");
  expect("{column: I, transform: digits}", row, NULL, "\"42\"");
  expect("{column: B, transform: digits}", row, NULL, "\"\"");
  expect("{column: U, transform: digits}", row, NULL, "\"\"");
  /* left to right: digits then to_int, not the other way round */
  expect("{column: P, transform: [digits, to_int]}", row, NULL, "395551234");
}

static void test_to_int_to_float(void **state) {
  (void)state;
  static const struct {
    const char *value, *as_int, *as_float;
  } cases[] = {
      {"42", "42", "42.0"},
      {"-4.7", "-4", "-4.7"},
      {"4.7", "4", "4.7"},
      {"-0.5", "0", "-0.5"},
      {"1e300", "null", "1e300"},
      {"9223372036854775807", "9223372036854775807", "9.223372036854776e18"},
      {"\"42\"", "42", "42.0"},
      {"\" 42 \"", "42", "42.0"},
      {"\"+7\"", "7", "7.0"},
      {"\"-7\"", "-7", "-7.0"},
      {"\"4.7\"", "4", "4.7"},
      {"\"-4.7\"", "-4", "-4.7"},
      {"\"1e3\"", "1000", "1000.0"},
      {"\".5\"", "0", "0.5"},
      {"\"5.\"", "5", "5.0"},
      {"\"9223372036854775807\"", "9223372036854775807", "9.223372036854776e18"},
      {"\"9223372036854775808\"", "null", "9.223372036854776e18"},
      {"\"-9223372036854775808\"", "-9223372036854775808", "-9.223372036854776e18"},
      {"\"1e400\"", "null", "null"},
      {"\"\"", "null", "null"},
      {"\"   \"", "null", "null"},
      {"\"abc\"", "null", "null"},
      {"\"42abc\"", "null", "null"},
      {"\"0x10\"", "null", "null"},
      {"\"inf\"", "null", "null"},
      {"\"nan\"", "null", "null"},
      {"\"1 000\"", "null", "null"},
      {"\"١٢\"", "null", "null"}, /* Arabic-Indic digits are not ASCII digits */
      {"true", "null", "null"},
      {"false", "null", "null"},
      {"null", "null", "null"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char row[256];
    snprintf(row, sizeof row, "{\"V\": %s}", cases[i].value);
    expect("{column: V, transform: to_int}", row, NULL, cases[i].as_int);
    expect("{column: V, transform: to_float}", row, NULL, cases[i].as_float);
  }
}

/* ---- lookup ---------------------------------------------------------------------- */

static void test_lookup(void **state) {
  (void)state;
  memdb db = db_of("{\"Suburbs\": {\"7\": {\"Name\": \"Carlton\", \"Code\": null},"
                   "              \"true\": {\"Name\": \"Truth\"},"
                   "              \"2.5\": {\"Name\": \"Half\"},"
                   "              \"x\": {\"Name\": \" spaced \"}}}");
  const char *e = "{lookup: Suburbs, on: SuburbID, column: Name}";
  expect(e, "{\"SuburbID\": 7}", &db, "\"Carlton\"");
  expect(e, "{\"SuburbID\": \"7\"}", &db, "\"Carlton\"");
  expect(e, "{\"SuburbID\": 7.0}", &db, "\"Carlton\""); /* 7.0 renders as 7 */
  expect(e, "{\"SuburbID\": 2.5}", &db, "\"Half\"");
  expect(e, "{\"SuburbID\": true}", &db, "\"Truth\"");
  expect(e, "{\"SuburbID\": null}", &db, "null");
  expect(e, "{}", &db, "null");
  expect(e, "{\"SuburbID\": 8}", &db, "null");      /* no such row */
  expect(e, "{\"SuburbID\": \"\"}", &db, "null");   /* no row has an empty key */
  expect(e, "{\"SuburbID\": \" 7\"}", &db, "null"); /* keys match exactly */
  expect("{lookup: Suburbs, on: SuburbID, column: Code}", "{\"SuburbID\": 7}", &db, "null");
  expect("{lookup: Suburbs, on: SuburbID, column: Nope}", "{\"SuburbID\": 7}", &db, "null");
  expect("{lookup: Nowhere, on: SuburbID, column: Name}", "{\"SuburbID\": 7}", &db, "null");
  expect("{lookup: Suburbs, on: SuburbID, column: Name, transform: [trim, upper]}",
         "{\"SuburbID\": \"x\"}", &db, "\"SPACED\"");
  json_decref(db.tables);
}

/* ---- collect ------------------------------------------------------------------------ */

static void test_collect_order(void **state) {
  (void)state;
  /* mixed order_by types: null (and missing) < bool < number < string; ties by key */
  memdb db = db_of("{\"P\": {"
                   " \"k01\": {\"C\": \"k1\", \"O\": \"b\"},"
                   " \"k02\": {\"C\": \"k1\", \"O\": 10},"
                   " \"k03\": {\"C\": \"k1\", \"O\": 9.5},"
                   " \"k04\": {\"C\": \"k1\", \"O\": null},"
                   " \"k05\": {\"C\": \"k1\"},"
                   " \"k06\": {\"C\": \"k1\", \"O\": true},"
                   " \"k07\": {\"C\": \"k1\", \"O\": false},"
                   " \"k08\": {\"C\": \"k1\", \"O\": \"B\"},"
                   " \"k09\": {\"C\": \"k1\", \"O\": 10.0},"
                   " \"k10\": {\"C\": \"k1\", \"O\": -3},"
                   " \"k11\": {\"C\": \"k1\", \"O\": \"é\"},"
                   " \"k12\": {\"C\": \"k1\", \"O\": \"\"},"
                   " \"k00\": {\"C\": \"k1\", \"O\": 10},"
                   " \"x1\": {\"C\": \"k2\", \"O\": 0},"
                   " \"x2\": {\"C\": \"k1 \", \"O\": 0}}}");
  expect("{collect: P, on: C, order_by: O, fields: {k: {template: '{_key}'}}}", "{}", &db,
         "[{\"k\":\"k04\"},{\"k\":\"k05\"},{\"k\":\"k07\"},{\"k\":\"k06\"},{\"k\":\"k10\"},"
         "{\"k\":\"k03\"},{\"k\":\"k00\"},{\"k\":\"k02\"},{\"k\":\"k09\"},{\"k\":\"k12\"},"
         "{\"k\":\"k08\"},{\"k\":\"k01\"},{\"k\":\"k11\"}]");
  /* without order_by: by child key, bytewise */
  expect("{collect: P, on: C, fields: {o: O}}", "{}", &db,
         "[{\"o\":10},{\"o\":\"b\"},{\"o\":10},{\"o\":9.5},{\"o\":null},{\"o\":null},"
         "{\"o\":true},{\"o\":false},{\"o\":\"B\"},{\"o\":10.0},{\"o\":-3},{\"o\":\"é\"},"
         "{\"o\":\"\"}]");
  json_decref(db.tables);
}

static void test_collect_cases(void **state) {
  (void)state;
  memdb db = db_of("{\"P\": {\"a\": {\"C\": 5, \"N\": \"x\", \"S\": 1},"
                   "        \"b\": {\"C\": 5.0, \"N\": \"y\", \"S\": 1},"
                   "        \"c\": {\"C\": \"5\", \"N\": \"z\", \"S\": 1},"
                   "        \"d\": {\"C\": null, \"N\": \"w\"}},"
                   " \"Kinds\": {\"1\": {\"Label\": \"Home\"}}}");
  /* the parent key is "k1": nobody */
  expect("{collect: P, on: C, fields: {n: N}}", "{}", &db, "[]");
  /* 5, 5.0 and "5" all render as "5": all three are children of root "5" */
  ferry_mapping *m =
      load_ok("version: 1\nentities:\n"
              "  p: {endpoint: /p, source: P, fields: {n: N}}\n"
              "  e:\n    endpoint: /e\n    source: T\n    fields:\n"
              "      f: {collect: P, on: C, order_by: S, fields: {n: N, "
              "kind: {lookup: Kinds, on: S, column: Label}, up: {ref: p, key: 'p-{_key}'}, "
              "t: {template: '{N}:{_key}', transform: upper}}}\n");
  json_t *row = parse("{}"), *payload;
  ferry_row_source src = source_of(&db);
  int passes;
  ferry_error err;
  size_t e = ferry_mapping_entity_find(m, "e");
  assert_int_equal(ferry_mapping_derive(m, e, "5", row, &src, &passes, NULL, &payload, &err), 0);
  expect_canonical(
      payload, "{\"f\":[{\"kind\":\"Home\",\"n\":\"x\",\"t\":\"X:A\",\"up\":{\"$ref\":\"p/p-a\"}},"
               "{\"kind\":\"Home\",\"n\":\"y\",\"t\":\"Y:B\",\"up\":{\"$ref\":\"p/p-b\"}},"
               "{\"kind\":\"Home\",\"n\":\"z\",\"t\":\"Z:C\",\"up\":{\"$ref\":\"p/p-c\"}}]}");
  json_decref(payload);
  /* the lookup inside the collect is a join from P, under the collect */
  const ferry_mapping_join *j;
  assert_int_equal(ferry_mapping_joins(m, &j), 2);
  assert_int_equal(j[0].kind, FERRY_JOIN_COLLECT);
  assert_int_equal(j[0].entity, e);
  assert_int_equal(j[1].kind, FERRY_JOIN_LOOKUP);
  assert_string_equal(j[1].from, "P");
  assert_string_equal(j[1].table, "Kinds");
  assert_string_equal(j[1].column, "S");
  assert_int_equal(j[1].parent, 0);
  /* a source that reports a row whose column does not match is overruled */
  db.lie = 1;
  assert_int_equal(ferry_mapping_derive(m, e, "6", row, &src, &passes, NULL, &payload, &err), 0);
  expect_canonical(payload, "{\"f\":[]}");
  json_decref(payload);
  json_decref(row);
  ferry_mapping_free(m);
  json_decref(db.tables);
}

/* ---- refs ---------------------------------------------------------------------------- */

typedef struct seen {
  char list[512];
} seen;

static ferry_status note_ref(void *arg, const char *entity, const char *key) {
  seen *s = arg;
  strcat(s->list, entity);
  strcat(s->list, "|");
  strcat(s->list, key);
  strcat(s->list, ";");
  return strcmp(key, "stop") == 0 ? FERRY_EINVAL : FERRY_OK;
}

static ferry_status resolver(void *arg, const char *entity, const char *key, json_t **id) {
  (void)arg;
  if (strcmp(key, "fail") == 0) return FERRY_EIO;
  if (strcmp(entity, "contact") == 0 && strcmp(key, "42") == 0)
    *id = json_integer(1001);
  else if (strcmp(key, "a/b") == 0)
    *id = json_string("c-7");
  else
    *id = NULL;
  return FERRY_OK;
}

static void test_refs(void **state) {
  (void)state;
  json_t *p =
      parse("{\"a\": {\"$ref\": \"contact/42\"}, \"b\": [{\"x\": {\"$ref\": \"contact/a/b\"}},"
            " {\"$ref\": \"contact/43\"}], \"c\": {\"$ref\": \"nokey\"},"
            " \"d\": {\"$ref\": \"bad name/1\"}, \"e\": {\"$ref\": 5},"
            " \"f\": {\"$ref\": \"contact/1\", \"other\": 1}, \"g\": 3}");
  seen s = {""};
  assert_int_equal(ferry_payload_refs(p, note_ref, &s), FERRY_OK);
  assert_string_equal(s.list, "contact|42;contact|a/b;contact|43;");
  json_t *out = NULL;
  assert_int_equal(ferry_payload_resolve(p, resolver, NULL, &out), FERRY_OK);
  expect_canonical(out, "{\"a\":1001,\"b\":[{\"x\":\"c-7\"},null],\"c\":{\"$ref\":\"nokey\"},"
                        "\"d\":{\"$ref\":\"bad name/1\"},\"e\":{\"$ref\":5},"
                        "\"f\":{\"$ref\":\"contact/1\",\"other\":1},\"g\":3}");
  json_decref(out);
  /* the original is untouched */
  const char *target;
  assert_true(ferry_payload_ref_target(json_object_get(p, "a"), &target));
  assert_string_equal(target, "contact/42");
  assert_false(ferry_payload_ref_target(json_object_get(p, "c"), NULL));
  json_decref(p);

  p = parse("[{\"$ref\": \"e/stop\"}, {\"$ref\": \"e/later\"}]");
  s.list[0] = '\0';
  assert_int_equal(ferry_payload_refs(p, note_ref, &s), FERRY_EINVAL);
  assert_string_equal(s.list, "e|stop;");
  json_decref(p);

  p = parse("[{\"$ref\": \"e/fail\"}]");
  out = (json_t *)1;
  assert_int_equal(ferry_payload_resolve(p, resolver, NULL, &out), FERRY_EIO);
  assert_null(out);
  json_decref(p);

  json_t *r = ferry_payload_ref_new("contact", "a/b");
  expect_canonical(r, "{\"$ref\":\"contact/a/b\"}");
  json_decref(r);

  /* a ref's key renders against the row; null columns render empty */
  ferry_mapping *m =
      load_ok("version: 1\nentities:\n"
              "  c: {endpoint: /c, source: C, fields: {x: X}}\n"
              "  e: {endpoint: /e, source: T, fields: {r: {ref: c, key: '{Id}-{_key}'}}}\n");
  json_t *row = parse("{\"Id\": 4.0}"), *payload;
  int passes;
  ferry_error err;
  assert_int_equal(ferry_mapping_derive(m, 1, "k", row, NULL, &passes, NULL, &payload, &err), 0);
  expect_canonical(payload, "{\"r\":{\"$ref\":\"c/4-k\"}}");
  json_decref(payload);
  json_decref(row);
  row = parse("{}");
  assert_int_equal(ferry_mapping_derive(m, 1, "k", row, NULL, &passes, NULL, &payload, &err), 0);
  expect_canonical(payload, "{\"r\":{\"$ref\":\"c/-k\"}}");
  json_decref(payload);
  json_decref(row);
  ferry_mapping_free(m);
}

/* ---- filters -------------------------------------------------------------------------- */

static int passes_filter(const char *filter, const char *row_json) {
  char yaml[2048];
  snprintf(yaml, sizeof yaml,
           "version: 1\nentities:\n  e:\n    endpoint: /e\n    source: T\n"
           "    filter: %s\n    fields: {}\n",
           filter);
  ferry_mapping *m = load_ok(yaml);
  json_t *row = parse(row_json);
  int passes = -1;
  char *key = NULL;
  ferry_error err;
  assert_int_equal(ferry_mapping_entity_key(m, 0, "k", row, &passes, &key, &err), FERRY_OK);
  assert_true(passes ? key != NULL : key == NULL);
  free(key);
  json_decref(row);
  ferry_mapping_free(m);
  return passes;
}

static void test_filters(void **state) {
  (void)state;
  assert_true(passes_filter("{column: A, equals: 1}", "{\"A\": 1}"));
  assert_true(passes_filter("{column: A, equals: 1}", "{\"A\": 1.0}"));
  assert_true(passes_filter("{column: A, equals: 1.0}", "{\"A\": 1}"));
  assert_false(passes_filter("{column: A, equals: 1}", "{\"A\": \"1\"}"));
  assert_false(passes_filter("{column: A, equals: '1'}", "{\"A\": 1}"));
  assert_true(passes_filter("{column: A, equals: '1'}", "{\"A\": \"1\"}"));
  assert_false(passes_filter("{column: A, equals: 1}", "{\"A\": true}"));
  assert_false(passes_filter("{column: A, equals: true}", "{\"A\": 1}"));
  assert_false(passes_filter("{column: A, equals: 1}", "{}"));
  assert_true(passes_filter("{column: A, equals: null}", "{}"));
  assert_true(passes_filter("{column: A, equals: null}", "{\"A\": null}"));
  assert_false(passes_filter("{column: A, equals: null}", "{\"A\": 0}"));
  assert_false(passes_filter("{column: A, equals: null}", "{\"A\": \"\"}"));
  assert_true(passes_filter("{column: A, equals: Zoë}", "{\"A\": \"Zoë\"}"));
  assert_false(passes_filter("{column: A, equals: Zoë}", "{\"A\": \"ZOË\"}"));
  assert_false(
      passes_filter("{column: A, equals: 9007199254740993}", "{\"A\": 9007199254740992.0}"));
  assert_true(
      passes_filter("{column: A, equals: 9007199254740992}", "{\"A\": 9007199254740992.0}"));

  assert_true(passes_filter("{column: A, not_equals: true}", "{}"));
  assert_true(passes_filter("{column: A, not_equals: true}", "{\"A\": null}"));
  assert_true(passes_filter("{column: A, not_equals: true}", "{\"A\": false}"));
  assert_true(passes_filter("{column: A, not_equals: true}", "{\"A\": \"true\"}"));
  assert_true(passes_filter("{column: A, not_equals: true}", "{\"A\": 1}"));
  assert_false(passes_filter("{column: A, not_equals: true}", "{\"A\": true}"));

  assert_true(passes_filter("{column: A, is_null: true}", "{}"));
  assert_true(passes_filter("{column: A, is_null: true}", "{\"A\": null}"));
  assert_false(passes_filter("{column: A, is_null: true}", "{\"A\": \"\"}"));
  assert_false(passes_filter("{column: A, is_null: true}", "{\"A\": false}"));
  assert_true(passes_filter("{column: A, is_null: false}", "{\"A\": 0}"));
  assert_false(passes_filter("{column: A, is_null: false}", "{}"));

  assert_true(passes_filter("{column: A, in: [x, 2, null]}", "{\"A\": 2.0}"));
  assert_true(passes_filter("{column: A, in: [x, 2, null]}", "{\"A\": \"x\"}"));
  assert_true(passes_filter("{column: A, in: [x, 2, null]}", "{}"));
  assert_false(passes_filter("{column: A, in: [x, 2, null]}", "{\"A\": \"2\"}"));
  assert_false(passes_filter("{column: A, in: []}", "{\"A\": 1}"));

  assert_true(passes_filter("{all: []}", "{}"));
  assert_false(passes_filter("{any: []}", "{}"));
  const char *both = "{all: [{column: A, equals: 1}, {column: B, is_null: false}]}";
  assert_true(passes_filter(both, "{\"A\": 1, \"B\": 0}"));
  assert_false(passes_filter(both, "{\"A\": 1}"));
  assert_false(passes_filter(both, "{\"B\": 1}"));
  const char *either = "{any: [{column: A, equals: 1}, {column: B, is_null: false}]}";
  assert_true(passes_filter(either, "{\"A\": 1}"));
  assert_true(passes_filter(either, "{\"B\": 1}"));
  assert_false(passes_filter(either, "{\"A\": 2}"));
  assert_false(passes_filter("{not: {column: A, equals: 1}}", "{\"A\": 1}"));
  assert_true(passes_filter("{not: {column: A, equals: 1}}", "{}"));
  assert_true(passes_filter("{not: {any: [{column: A, equals: 1}, {all: [{column: B, equals: x},"
                            " {not: {column: C, is_null: true}}]}]}}",
                            "{\"A\": 2, \"B\": \"x\"}"));
}

/* ---- keys and derive ------------------------------------------------------------------- */

static void test_entity_keys(void **state) {
  (void)state;
  ferry_mapping *m =
      load_ok("version: 1\nentities:\n"
              "  a: {endpoint: /a, source: T, fields: {x: X}}\n"
              "  b: {endpoint: /b, source: T, key: '{Region}-{_key}', fields: {x: X}}\n");
  json_t *row = parse("{\"Region\": 3.0, \"X\": 1}");
  int passes;
  char *key;
  ferry_error err;
  assert_int_equal(ferry_mapping_entity_key(m, 0, "r1", row, &passes, &key, &err), FERRY_OK);
  assert_string_equal(key, "r1");
  free(key);
  assert_int_equal(ferry_mapping_entity_key(m, 1, "r1", row, &passes, &key, &err), FERRY_OK);
  assert_string_equal(key, "3-r1");
  free(key);
  json_decref(row);

  /* a key with a NUL byte cannot name an entity */
  row = json_pack("{s:s%}", "Region", "a\0b", (size_t)3);
  assert_int_equal(ferry_mapping_entity_key(m, 1, "r1", row, &passes, &key, &err), FERRY_EINVAL);
  assert_null(key);
  json_decref(row);

  /* bad arguments */
  row = parse("[1]");
  assert_int_equal(ferry_mapping_entity_key(m, 0, "r1", row, &passes, &key, &err), FERRY_EINVAL);
  json_decref(row);
  row = parse("{}");
  assert_int_equal(ferry_mapping_entity_key(m, 2, "r1", row, &passes, &key, &err), FERRY_EINVAL);
  assert_int_equal(ferry_mapping_entity_key(m, 0, NULL, row, &passes, &key, &err), FERRY_EINVAL);
  json_decref(row);
  ferry_mapping_free(m);
}

static void test_source_errors(void **state) {
  (void)state;
  ferry_mapping *m = NULL;
  ferry_error err;
  assert_int_equal(ferry_mapping_load(&m, read_example(), &err), FERRY_OK);
  memdb db = db_of(demo_rows);
  json_t *root = json_object_get(json_object_get(db.tables, "Contacts"), "42");
  int passes = -1;
  char *key = (char *)1;
  json_t *payload = (json_t *)1;
  /* no row source for an entity that needs one */
  assert_int_equal(ferry_mapping_derive(m, 0, "42", root, NULL, &passes, &key, &payload, &err),
                   FERRY_EINVAL);
  assert_non_null(strstr(err.msg, "needs a row source"));
  assert_null(key);
  assert_null(payload);
  assert_int_equal(passes, 0);
  /* the source's failure is the derive's */
  ferry_row_source src = source_of(&db);
  db.fail = FERRY_EIO;
  assert_int_equal(ferry_mapping_derive(m, 0, "42", root, &src, &passes, &key, &payload, &err),
                   FERRY_EIO);
  assert_string_equal(err.msg, "memdb: injected failure");
  assert_null(payload);
  /* the old image needs no source at all */
  assert_int_equal(ferry_mapping_entity_key(m, 0, "42", root, &passes, &key, &err), FERRY_OK);
  assert_string_equal(key, "42");
  free(key);
  /* address reads no other row */
  db.fail = FERRY_OK;
  db.reads = 0;
  assert_int_equal(ferry_mapping_derive(m, 1, "42", root, &src, &passes, NULL, &payload, &err), 0);
  assert_int_equal(db.reads, 0);
  json_decref(payload);
  /* contact reads the suburb and two phones */
  assert_int_equal(ferry_mapping_derive(m, 0, "42", root, &src, &passes, NULL, &payload, &err), 0);
  assert_int_equal(db.reads, 3);
  json_decref(payload);
  json_decref(db.tables);
  ferry_mapping_free(m);
}

/* ---- values ---------------------------------------------------------------------------- */

static void test_compare(void **state) {
  (void)state;
  const char *ordered[] = {"null",
                           "false",
                           "true",
                           "-1e300",
                           "-9223372036854775808",
                           "-1.5",
                           "-1",
                           "0",
                           "0.5",
                           "1",
                           "9007199254740992",
                           "9007199254740993",
                           "9223372036854775807",
                           "9223372036854775808.0",
                           "1e300",
                           "\"\"",
                           "\"A\"",
                           "\"a\"",
                           "\"a\\u0000\"",
                           "\"ab\"",
                           "\"é\"",
                           "[]",
                           "[1]",
                           "[1,2]",
                           "[2]",
                           "{}",
                           "{\"a\":1}",
                           "{\"a\":2}",
                           "{\"b\":0}"};
  size_t n = sizeof ordered / sizeof ordered[0];
  json_t *v[64];
  for (size_t i = 0; i < n; i++)
    v[i] = parse(ordered[i]);
  for (size_t i = 0; i < n; i++) {
    for (size_t k = 0; k < n; k++) {
      int c = ferry_value_compare(v[i], v[k]);
      int want = i < k ? -1 : i > k;
      if (c != want) fail_msg("compare(%s, %s) = %d, want %d", ordered[i], ordered[k], c, want);
    }
  }
  for (size_t i = 0; i < n; i++)
    json_decref(v[i]);

  json_t *a = parse("1"), *b = parse("1.0"), *c = parse("\"1\"");
  assert_true(ferry_value_equal(a, b));
  assert_false(ferry_value_equal(a, c));
  assert_true(ferry_value_equal(NULL, json_null()));
  json_decref(a);
  json_decref(b);
  json_decref(c);
  a = parse("{\"x\": [1, 2.0, {\"y\": null}]}");
  b = parse("{\"x\": [1.0, 2, {\"y\": null}]}");
  assert_true(ferry_value_equal(a, b));
  json_decref(a);
  json_decref(b);
}

static void test_canonical(void **state) {
  (void)state;
  json_t *a =
      parse("{\"b\": 1, \"a\": [true, null, 4.0, -0.0, 0.1, 1e300, \"x\"], \"\\u00e9\": {}, "
            "\"A\": \"q\\\"\\\\\\n\\t\\u0001\\u001f\\u007f/é\"}");
  json_t *b = json_object();
  /* same members, other insertion order */
  json_object_set(b, "\xc3\xa9", json_object_get(a, "\xc3\xa9"));
  json_object_set(b, "A", json_object_get(a, "A"));
  json_object_set(b, "a", json_object_get(a, "a"));
  json_object_set_new(b, "b", json_real(1.0));
  const char *want = "{\"A\":\"q\\\"\\\\\\n\\t\\u0001\\u001f\x7f/é\",\"a\":[true,null,4,0,0.1,"
                     "1e+300,\"x\"],\"b\":1,\"é\":{}}";
  expect_canonical(a, want);
  expect_canonical(b, want);
  char ha[33], hb[33];
  assert_int_equal(ferry_value_hash(a, ha), FERRY_OK);
  assert_int_equal(ferry_value_hash(b, hb), FERRY_OK);
  assert_string_equal(ha, hb);
  assert_int_equal(strlen(ha), 32);
  assert_int_equal(strspn(ha, "0123456789abcdef"), 32);
  /* canonical text reads back to an equal value */
  char *text = ferry_value_canonical(a);
  json_t *back = parse(text);
  assert_true(ferry_value_equal(a, back));
  free(text);
  json_decref(back);
  json_object_set_new(b, "b", json_integer(2));
  assert_int_equal(ferry_value_hash(b, hb), FERRY_OK);
  assert_string_not_equal(ha, hb);
  json_decref(a);
  json_decref(b);

  json_t *nul = json_stringn("a\0b", 3);
  expect_canonical(nul, "\"a\\u0000b\"");
  json_decref(nul);
  json_t *scalars =
      parse("[\"\\b\\f\\r\", 9223372036854775807, -9223372036854775808, 1e-7, 2.5e-300]");
  expect_canonical(scalars,
                   "[\"\\b\\f\\r\",9223372036854775807,-9223372036854775808,1e-07,2.5e-300]");
  json_decref(scalars);
}

/* ---- allocation failures ------------------------------------------------------------ */

static void *counting_malloc(size_t n) {
  return mapping_alloc_fails() ? NULL : malloc(n);
}

/* Loads the demo mapping and derives both entities with the n-th allocation
 * failing (in ferry or in jansson). Every run must end in FERRY_OK or
 * FERRY_ENOMEM and leak nothing (LeakSanitizer checks in sanitizer builds). */
static void test_alloc_failures(void **state) {
  (void)state;
  FILE *f = fopen(read_example(), "rb");
  assert_non_null(f);
  static char yaml[8192];
  size_t len = fread(yaml, 1, sizeof yaml, f);
  fclose(f);
  memdb db = db_of(demo_rows);
  ferry_row_source src = source_of(&db);
  json_t *root = json_object_get(json_object_get(db.tables, "Contacts"), "42");
  long n;
  int failures = 0;
  for (n = 0; n < 100000; n++) {
    ferry_mapping *m = NULL;
    ferry_error err;
    mapping_alloc_countdown = n;
    ferry_status st = ferry_mapping_load_buffer(&m, "t.yaml", yaml, len, &err);
    for (size_t i = 0; st == FERRY_OK && i < 2; i++) {
      int passes;
      char *key = NULL, *canon = NULL;
      json_t *payload = NULL;
      st = ferry_mapping_derive(m, i, "42", root, &src, &passes, &key, &payload, &err);
      if (st == FERRY_OK && !(canon = ferry_value_canonical(payload))) st = FERRY_ENOMEM;
      free(canon);
      free(key);
      json_decref(payload);
    }
    long left = mapping_alloc_countdown;
    mapping_alloc_countdown = -1;
    ferry_mapping_free(m);
    if (st != FERRY_OK && st != FERRY_ENOMEM)
      fail_msg("allocation %ld: status %d: %s", n, st, err.msg);
    if (st == FERRY_ENOMEM) failures++;
    if (st == FERRY_OK && left >= 0) break; /* the countdown never ran out: all paths seen */
  }
  print_message("failed each of %ld allocations in turn\n", n);
  assert_true(n > 50);
  assert_true(failures > 50);
  json_decref(db.tables);
}

/* The fold derives an entity again after a change of its root row only if a
 * column the entity reads of that row changed: each kind of reader counts,
 * and columns read only by a collect's children (or by no one) do not. */
static void test_root_change_matters(void **state) {
  (void)state;
  ferry_mapping *m = load_ok(
      "version: 1\n"
      "entities:\n"
      "  org:\n"
      "    endpoint: /orgs\n"
      "    source: Orgs\n"
      "    fields: {name: Name}\n"
      "  c:\n"
      "    endpoint: /c\n"
      "    source: T\n"
      "    key: \"{K}-{_key}\"\n"
      "    filter: {any: [{column: F, equals: 1}, {not: {column: G, is_null: true}}]}\n"
      "    fields:\n"
      "      a: A\n"
      "      t: {template: \"x{B}\"}\n"
      "      k: {const: 1}\n"
      "      l: {lookup: Orgs, on: L, column: Name}\n"
      "      r: {ref: org, key: \"{R}\"}\n"
      "      kids: {collect: Kids, on: P, fields: {n: N}}\n");
  size_t c = ferry_mapping_entity_find(m, "c");
  const char *base = "{\"K\":1,\"F\":1,\"G\":null,\"A\":\"a\",\"B\":2,\"L\":\"3\","
                     "\"R\":\"4\",\"N\":5,\"P\":6,\"Z\":7}";
  json_t *old = json_loads(base, 0, NULL);
  assert_non_null(old);
  /* unread columns, including the ones a collect's children have */
  const char *unread[] = {"N", "P", "Z", "Q"};
  for (size_t i = 0; i < sizeof unread / sizeof *unread; i++) {
    json_t *row = json_deep_copy(old);
    json_object_set_new(row, unread[i], json_string("changed"));
    if (ferry_mapping_root_change_matters(m, c, old, row))
      fail_msg("a change of %s (not read by c) counted", unread[i]);
    json_decref(row);
  }
  /* every reader: key template, filter (nested), column, template, lookup's on, ref key */
  const char *read[] = {"K", "F", "G", "A", "B", "L", "R"};
  for (size_t i = 0; i < sizeof read / sizeof *read; i++) {
    json_t *row = json_deep_copy(old);
    json_object_set_new(row, read[i], json_string("changed"));
    if (!ferry_mapping_root_change_matters(m, c, old, row))
      fail_msg("a change of %s (read by c) did not count", read[i]);
    json_object_del(row, read[i]); /* gone: also a change */
    if (!ferry_mapping_root_change_matters(m, c, old, row))
      fail_msg("removing %s (read by c) did not count", read[i]);
    json_decref(row);
  }
  /* 1 and 1.0 compare equal in a filter, but any difference is a change here */
  json_t *row = json_deep_copy(old);
  json_object_set_new(row, "F", json_real(1.0));
  assert_true(ferry_mapping_root_change_matters(m, c, old, row));
  json_decref(row);
  /* a row that is not there (created, deleted) always matters */
  assert_true(ferry_mapping_root_change_matters(m, c, NULL, old));
  assert_true(ferry_mapping_root_change_matters(m, c, old, NULL));
  assert_false(ferry_mapping_root_change_matters(m, c, old, old));
  json_decref(old);
  ferry_mapping_free(m);
}

int main(void) {
  /* jansson allocates through the same countdown as the module */
  json_set_alloc_funcs(counting_malloc, free);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_example),
      cmocka_unit_test(test_hash),
      cmocka_unit_test(test_topological_order),
      cmocka_unit_test(test_load_errors),
      cmocka_unit_test(test_load_depth),
      cmocka_unit_test(test_load_limits),
      cmocka_unit_test(test_load_file_errors),
      cmocka_unit_test(test_yaml_scalars),
      cmocka_unit_test(test_column),
      cmocka_unit_test(test_template),
      cmocka_unit_test(test_text_rendering),
      cmocka_unit_test(test_const),
      cmocka_unit_test(test_transforms),
      cmocka_unit_test(test_to_int_to_float),
      cmocka_unit_test(test_lookup),
      cmocka_unit_test(test_collect_order),
      cmocka_unit_test(test_collect_cases),
      cmocka_unit_test(test_refs),
      cmocka_unit_test(test_filters),
      cmocka_unit_test(test_entity_keys),
      cmocka_unit_test(test_source_errors),
      cmocka_unit_test(test_compare),
      cmocka_unit_test(test_canonical),
      cmocka_unit_test(test_alloc_failures),
      cmocka_unit_test(test_root_change_matters),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
