/*
 * Unit tests of the ingest decoders (ferry/change.h): every valid form of a
 * change, every kind of invalid input with the line and field it must be
 * reported under, protobuf round trips, the fast NDJSON path against the
 * jansson path, and the two-thread split against one thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ferry/change.h"
#include "ferry/v1/change.pb-c.h"
#include "common/arena.h"
#include "ingest/batch.h"

/* ------------------------------------------------------------ helpers --- */

static ferry_decode_opts opts_for(const char *customer, bool skip) {
  ferry_decode_opts o = {customer, skip, 0};
  return o;
}

/* Decodes NDJSON text for customer "acme"; returns the status. */
static ferry_status nd(const char *text, bool skip, ferry_batch **b) {
  ferry_decode_opts o = opts_for("acme", skip);
  ferry_error err;
  return ferry_batch_decode(FERRY_FORMAT_NDJSON, text, strlen(text), &o, b, &err);
}

static Ferry__V1__Change *unpack(const ferry_batch *b, size_t i) {
  assert_true(i < ferry_batch_count(b));
  const ferry_change_ref *r = &ferry_batch_changes(b)[i];
  Ferry__V1__Change *c = ferry__v1__change__unpack(NULL, r->pb_len, r->pb);
  assert_non_null(c);
  /* the ref's id is the packed id */
  assert_int_equal(r->id_len, strlen(c->id));
  assert_memory_equal(r->id, c->id, r->id_len);
  /* and the packing is protobuf-c's own, byte for byte */
  uint8_t *again = malloc(r->pb_len + 1);
  assert_int_equal(ferry__v1__change__pack(c, again), r->pb_len);
  assert_memory_equal(again, r->pb, r->pb_len);
  free(again);
  return c;
}

/* Decodes one valid NDJSON line and unpacks its change. */
static Ferry__V1__Change *one(const char *line) {
  ferry_batch *b = NULL;
  ferry_decode_opts o = opts_for("acme", false);
  ferry_error err;
  ferry_status st = ferry_batch_decode(FERRY_FORMAT_NDJSON, line, strlen(line), &o, &b, &err);
  if (st) fail_msg("%s: %s", line, err.msg);
  assert_int_equal(ferry_batch_count(b), 1);
  Ferry__V1__Change *c = unpack(b, 0);
  ferry_batch_free(b);
  return c;
}

/* Decodes one invalid NDJSON line; checks line 1, the field and that the
 * reason contains want. */
static void bad_line(const char *line, const char *field, const char *want) {
  ferry_batch *b = NULL;
  ferry_decode_opts o = opts_for("acme", false);
  ferry_error err;
  ferry_status st = ferry_batch_decode(FERRY_FORMAT_NDJSON, line, strlen(line), &o, &b, &err);
  if (st != FERRY_EINVAL) fail_msg("accepted: %s", line);
  assert_non_null(b);
  assert_int_equal(ferry_batch_error_count(b), 1);
  assert_int_equal(ferry_batch_invalid_total(b), 1);
  assert_int_equal(ferry_batch_count(b), 0);
  const ferry_change_error *e = ferry_batch_errors(b);
  assert_int_equal(e->line, 1);
  if (strcmp(e->field, field) != 0 || !strstr(e->reason, want))
    fail_msg("%s\n  got %s: %s\n  want %s: ...%s...", line, e->field, e->reason, field, want);
  assert_ptr_equal(e->text, line);
  ferry_batch_free(b);
}

#define HEAD "{\"table\":\"T\",\"key\":1,\"op\":\"upsert\",\"version\":1,"
#define UPSERT(rest) HEAD "\"row\":{\"A\":1}" rest "}"

/* ------------------------------------------------------- valid NDJSON --- */

static void test_basic_upsert(void **state) {
  (void)state;
  Ferry__V1__Change *c =
      one("{\"table\":\"Contacts\",\"key\":\"42\",\"op\":\"upsert\",\"version\":17,\"id\":\"b9:3\","
          "\"at\":\"2026-11-24T10:00:00Z\",\"row\":{\"ContactID\":42,\"FirstName\":\"Ann\","
          "\"Email\":\"ANN@X.COM\",\"IsArchived\":false}}");
  assert_string_equal(c->table, "Contacts");
  assert_string_equal(c->key, "42");
  assert_int_equal(c->op, FERRY__V1__OP__OP_UPSERT);
  assert_int_equal(c->version, 17);
  assert_string_equal(c->id, "b9:3");
  assert_string_equal(c->at, "2026-11-24T10:00:00Z");
  assert_string_equal(c->customer, "");
  assert_int_equal(c->n_row, 4);
  const char *names[] = {"ContactID", "FirstName", "Email", "IsArchived"};
  for (int i = 0; i < 4; i++)
    assert_string_equal(c->row[i]->name, names[i]);
  assert_int_equal(c->row[0]->value->int_value, 42);
  assert_string_equal(c->row[1]->value->string_value, "Ann");
  assert_int_equal(c->row[3]->value->kind_case, FERRY__V1__VALUE__KIND_BOOL_VALUE);
  assert_false(c->row[3]->value->bool_value);
  ferry__v1__change__free_unpacked(c, NULL);
}

static void test_key_forms(void **state) {
  (void)state;
  static const struct {
    const char *key, *want;
  } cases[] = {{"\"42\"", "42"},
               {"42", "42"},
               {"-7", "-7"},
               {"9223372036854775807", "9223372036854775807"},
               {"[\"a\",1,\"b\"]", "a|1|b"},
               {"[5]", "5"},
               {"\"a|b\"", "a|b"},
               {"\"caf\\u00e9\"", "caf\xc3\xa9"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char line[256];
    snprintf(line, sizeof line, "{\"table\":\"T\",\"key\":%s,\"op\":\"delete\",\"version\":3}",
             cases[i].key);
    Ferry__V1__Change *c = one(line);
    assert_string_equal(c->key, cases[i].want);
    char id[128];
    snprintf(id, sizeof id, "T/%s/3/delete", cases[i].want);
    assert_string_equal(c->id, id);
    ferry__v1__change__free_unpacked(c, NULL);
  }
}

static void test_op_aliases_and_default_id(void **state) {
  (void)state;
  static const struct {
    const char *op;
    int want;
    const char *id;
  } cases[] = {{"upsert", FERRY__V1__OP__OP_UPSERT, "Contacts/42/17/upsert"},
               {"insert", FERRY__V1__OP__OP_UPSERT, "Contacts/42/17/upsert"},
               {"update", FERRY__V1__OP__OP_UPSERT, "Contacts/42/17/upsert"},
               {"delete", FERRY__V1__OP__OP_DELETE, "Contacts/42/17/delete"}};
  for (size_t i = 0; i < 4; i++) {
    char line[256];
    snprintf(line, sizeof line,
             "{\"table\":\"Contacts\",\"key\":42,\"op\":\"%s\",\"version\":17%s}", cases[i].op,
             cases[i].want == FERRY__V1__OP__OP_UPSERT ? ",\"row\":{\"A\":null}" : "");
    Ferry__V1__Change *c = one(line);
    assert_int_equal(c->op, cases[i].want);
    assert_string_equal(c->id, cases[i].id);
    assert_int_equal(c->n_row, cases[i].want == FERRY__V1__OP__OP_UPSERT ? 1 : 0);
    ferry__v1__change__free_unpacked(c, NULL);
  }
  /* null optional fields are absent; a delete may say "row": null */
  Ferry__V1__Change *c = one("{\"table\":\"T\",\"key\":\"k\",\"op\":\"delete\",\"version\":2,"
                             "\"id\":null,\"at\":null,\"customer\":null,\"row\":null}");
  assert_string_equal(c->id, "T/k/2/delete");
  assert_string_equal(c->at, "");
  ferry__v1__change__free_unpacked(c, NULL);
  c = one(UPSERT(",\"customer\":\"acme\""));
  assert_string_equal(c->customer, "");
  ferry__v1__change__free_unpacked(c, NULL);
}

static void test_at_forms(void **state) {
  (void)state;
  const char *good[] = {"2026-11-24T10:00:00Z", "2026-11-24T10:00:00.123456Z",
                        "2026-11-24T10:00:00+02:00", "2026-11-24t10:00:00.5-11:30",
                        "2024-02-29T23:59:60z"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    char line[256];
    snprintf(line, sizeof line, UPSERT(",\"at\":\"%s\""), good[i]);
    Ferry__V1__Change *c = one(line);
    assert_string_equal(c->at, good[i]);
    ferry__v1__change__free_unpacked(c, NULL);
  }
  const char *bad[] = {"2026-11-24 10:00:00Z",
                       "2026-11-24T10:00:00",
                       "2026-13-01T00:00:00Z",
                       "2025-02-29T00:00:00Z",
                       "2026-11-24T24:00:00Z",
                       "2026-11-24T10:00:00.Z",
                       "2026-11-24T10:00:00+2:00",
                       "yesterday",
                       ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char line[256];
    snprintf(line, sizeof line, UPSERT(",\"at\":\"%s\""), bad[i]);
    bad_line(line, "at", "RFC 3339");
  }
}

static void test_value_types(void **state) {
  (void)state;
  Ferry__V1__Change *c =
      one(HEAD "\"row\":{\"n\":null,\"t\":true,\"f\":false,\"min\":-9223372036854775808,"
               "\"max\":9223372036854775807,\"d\":2.5,\"e\":1e3,\"z\":-0.0,\"s\":\"q\\\"\\n\\u00e9"
               "\\ud83d\\ude00\\/\",\"empty\":\"\",\"raw\":\"\xc3\xa9\xf0\x9f\x98\x80\"}}");
  assert_int_equal(c->n_row, 11);
  assert_int_equal(c->row[0]->value->kind_case, FERRY__V1__VALUE__KIND_NULL_VALUE);
  assert_true(c->row[1]->value->bool_value);
  assert_int_equal(c->row[2]->value->kind_case, FERRY__V1__VALUE__KIND_BOOL_VALUE);
  assert_true(c->row[3]->value->int_value == INT64_MIN);
  assert_true(c->row[4]->value->int_value == INT64_MAX);
  assert_true(c->row[5]->value->double_value == 2.5);
  assert_int_equal(c->row[6]->value->kind_case, FERRY__V1__VALUE__KIND_DOUBLE_VALUE);
  assert_true(c->row[6]->value->double_value == 1000.0);
  assert_int_equal(c->row[7]->value->kind_case, FERRY__V1__VALUE__KIND_DOUBLE_VALUE);
  assert_string_equal(c->row[8]->value->string_value, "q\"\n\xc3\xa9\xf0\x9f\x98\x80/");
  assert_int_equal(c->row[9]->value->kind_case, FERRY__V1__VALUE__KIND_STRING_VALUE);
  assert_string_equal(c->row[9]->value->string_value, "");
  assert_string_equal(c->row[10]->value->string_value, "\xc3\xa9\xf0\x9f\x98\x80");
  ferry__v1__change__free_unpacked(c, NULL);
  /* an empty row is a row; column names may be any UTF-8 up to 128 characters */
  c = one(HEAD "\"row\":{}}");
  assert_int_equal(c->n_row, 0);
  ferry__v1__change__free_unpacked(c, NULL);
  char line[1024] = HEAD "\"row\":{\"";
  for (int i = 0; i < 128; i++)
    strcat(line, "\xc3\xa9");
  strcat(line, "\":1}}");
  c = one(line);
  assert_int_equal(strlen(c->row[0]->name), 256);
  ferry__v1__change__free_unpacked(c, NULL);
}

static void test_crlf_and_blank_lines(void **state) {
  (void)state;
  ferry_batch *b = NULL;
  const char *text =
      UPSERT("") "\r\n"
                 "\r\n"
                 "   \t \n" UPSERT(",\"id\":\"x\"") "\r\n"
                                                    "\n" HEAD
                                                    "\"version\":0}\r\n" UPSERT(",\"id\":\"y\"");
  assert_int_equal(nd(text, true, &b), FERRY_OK);
  assert_int_equal(ferry_batch_count(b), 3);
  assert_int_equal(ferry_batch_error_count(b), 1);
  const ferry_change_error *e = ferry_batch_errors(b);
  assert_int_equal(e->line, 6);
  /* the \r is not part of the line as given */
  assert_int_equal(e->text[e->text_len - 1], '}');
  Ferry__V1__Change *c = unpack(b, 2);
  assert_string_equal(c->id, "y");
  ferry__v1__change__free_unpacked(c, NULL);
  ferry_batch_free(b);
  /* an empty input is an empty batch */
  assert_int_equal(nd("", false, &b), FERRY_OK);
  assert_int_equal(ferry_batch_count(b), 0);
  ferry_batch_free(b);
}

/* ----------------------------------------------------- invalid NDJSON --- */

static void test_malformed_json(void **state) {
  (void)state;
  bad_line("{\"table\":\"T\",\"key\":1,", "", "invalid JSON at column");
  bad_line(UPSERT("") " x", "", "end of file expected");
  bad_line("[1,2]", "", "expected a JSON object");
  bad_line("\"abc\"", "", "invalid JSON");
  bad_line(HEAD "\"row\":{\"A\":1,\"A\":2}}", "", "duplicate object key");
  bad_line(HEAD "\"key\":2,\"row\":{}}", "", "duplicate object key");
  bad_line(HEAD "\"row\":{\"A\":\"\\u0000\"}}", "", "invalid JSON");
  bad_line(HEAD "\"row\":{\"A\":\"\\ud800\"}}", "", "invalid JSON");
  bad_line(HEAD "\"row\":{\"A\":1e400}}", "", "invalid JSON");
}

static void test_invalid_utf8(void **state) {
  (void)state;
  bad_line("{\"table\":\"T\",\"key\":\"\xff\xfe\",\"op\":\"delete\",\"version\":3}", "",
           "invalid UTF-8");
  bad_line(HEAD "\"row\":{\"A\":\"\xc0\xaf\"}}", "", "invalid UTF-8");
  bad_line(HEAD "\"row\":{\"A\":\"\xed\xa0\x80\"}}", "", "invalid UTF-8");
}

static void test_unknown_and_wrong_types(void **state) {
  (void)state;
  bad_line(UPSERT(",\"colour\":1"), "colour", "unknown field");
  bad_line("{\"table\":1,\"key\":1,\"op\":\"delete\",\"version\":1}", "table", "expected a string");
  bad_line("{\"table\":\"T\",\"key\":true,\"op\":\"delete\",\"version\":1}", "key", "expected");
  bad_line("{\"table\":\"T\",\"key\":{},\"op\":\"delete\",\"version\":1}", "key", "expected");
  bad_line("{\"table\":\"T\",\"key\":1.5,\"op\":\"delete\",\"version\":1}", "key", "expected");
  bad_line("{\"table\":\"T\",\"key\":1,\"op\":1,\"version\":1}", "op", "expected a string");
  bad_line("{\"table\":\"T\",\"key\":1,\"op\":\"merge\",\"version\":1}", "op", "must be upsert");
  bad_line("{\"table\":\"T\",\"key\":1,\"op\":\"delete\",\"version\":\"7\"}", "version",
           "expected an integer");
  bad_line("{\"table\":\"T\",\"key\":1,\"op\":\"delete\",\"version\":17.0}", "version",
           "expected an integer");
  bad_line(UPSERT(",\"id\":5"), "id", "expected a string");
  bad_line(UPSERT(",\"at\":5"), "at", "expected a string");
  bad_line(UPSERT(",\"customer\":5"), "customer", "expected a string");
  bad_line(HEAD "\"row\":[]}", "row", "expected an object");
  bad_line(HEAD "\"row\":\"x\"}", "row", "expected an object");
  bad_line("{\"key\":1,\"op\":\"delete\",\"version\":1}", "table", "required");
  bad_line("{\"table\":\"T\",\"op\":\"delete\",\"version\":1}", "key", "required");
  bad_line("{\"table\":\"T\",\"key\":1,\"version\":1}", "op", "required");
  bad_line("{\"table\":\"T\",\"key\":1,\"op\":\"delete\"}", "version", "required");
}

static void test_nested_values(void **state) {
  (void)state;
  bad_line(HEAD "\"row\":{\"A\":{\"b\":1}}}", "row.A", "nested objects and arrays");
  bad_line(HEAD "\"row\":{\"ok\":1,\"B\":[1]}}", "row.B", "nested objects and arrays");
}

static void test_versions(void **state) {
  (void)state;
  bad_line("{\"table\":\"T\",\"key\":1,\"op\":\"delete\",\"version\":0}", "version", ">= 1");
  bad_line("{\"table\":\"T\",\"key\":1,\"op\":\"delete\",\"version\":-3}", "version", ">= 1");
  bad_line("{\"table\":\"T\",\"key\":1,\"op\":\"delete\",\"version\":99999999999999999999}",
           "version", "out of range");
  bad_line("{\"table\":\"T\",\"key\":-99999999999999999999,\"op\":\"delete\",\"version\":1}", "key",
           "out of range");
  bad_line(HEAD "\"row\":{\"Big\":18446744073709551616}}", "row.Big", "out of range");
  bad_line("{\"table\":\"T\",\"key\":[1,99999999999999999999],\"op\":\"delete\",\"version\":1}",
           "key[1]", "out of range");
  Ferry__V1__Change *c =
      one("{\"table\":\"T\",\"key\":1,\"op\":\"delete\",\"version\":9223372036854775807}");
  assert_true(c->version == INT64_MAX);
  ferry__v1__change__free_unpacked(c, NULL);
}

static char *repeat(const char *prefix, char ch, size_t n, const char *suffix) {
  size_t pl = strlen(prefix), sl = strlen(suffix);
  char *s = malloc(pl + n + sl + 1);
  memcpy(s, prefix, pl);
  memset(s + pl, ch, n);
  memcpy(s + pl + n, suffix, sl + 1);
  return s;
}

static void test_oversize(void **state) {
  (void)state;
  char *s = repeat("{\"table\":\"T\",\"key\":\"", 'k', 1025, "\",\"op\":\"delete\",\"version\":3}");
  bad_line(s, "key", "1025 bytes, over the limit of 1024");
  free(s);
  s = repeat("{\"table\":\"T\",\"key\":\"", 'k', 1024, "\",\"op\":\"delete\",\"version\":3}");
  Ferry__V1__Change *c = one(s);
  assert_int_equal(strlen(c->key), 1024);
  ferry__v1__change__free_unpacked(c, NULL);
  free(s);
  s = repeat("{\"table\":\"T\",\"key\":[\"", 'k', 1000,
             "\",\"abcdefghijklmnopqrstuvwxyz\"],"
             "\"op\":\"delete\",\"version\":3}");
  bad_line(s, "key", "1027 bytes, over the limit");
  free(s);
  s = repeat("{\"table\":\"", 't', 129, "\",\"key\":1,\"op\":\"delete\",\"version\":3}");
  bad_line(s, "table", "over the limit of 128");
  free(s);
  s = repeat(HEAD "\"row\":{\"", 'c', 129, "\":1}}");
  bad_line(s,
           "row.cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
           "ccccccccccccccccccccccccccccccccccccccccccccccccccc",
           "129 characters, over the limit of 128");
  free(s);
  s = repeat(HEAD "\"row\":{},\"id\":\"", 'i', 257, "\"}");
  bad_line(s, "id", "257 bytes, over the limit of 256");
  free(s);
  bad_line("{\"table\":\"T-1\",\"key\":1,\"op\":\"delete\",\"version\":3}", "table", "byte 2");
  bad_line("{\"table\":\"\",\"key\":1,\"op\":\"delete\",\"version\":3}", "table", "empty");
  bad_line(UPSERT(",\"id\":\"\""), "id", "empty");
  bad_line(HEAD "\"row\":{\"\":1}}", "row[0]", "column name must not be empty");
  /* a line over FERRY_LINE_MAX is refused without parsing it */
  s = repeat(HEAD "\"row\":{\"A\":\"", 'x', FERRY_LINE_MAX, "\"}}");
  bad_line(s, "", "over the limit of 16777216");
  free(s);
}

static void test_rows_and_keys(void **state) {
  (void)state;
  bad_line("{\"table\":\"T\",\"key\":1,\"op\":\"upsert\",\"version\":1}", "row",
           "required for upsert");
  bad_line("{\"table\":\"T\",\"key\":1,\"op\":\"upsert\",\"version\":1,\"row\":null}", "row",
           "required for upsert");
  bad_line("{\"table\":\"T\",\"key\":1,\"op\":\"delete\",\"version\":1,\"row\":{\"A\":1}}", "row",
           "not allowed on delete");
  bad_line("{\"table\":\"T\",\"key\":\"\",\"op\":\"delete\",\"version\":1}", "key", "empty");
  bad_line("{\"table\":\"T\",\"key\":[],\"op\":\"delete\",\"version\":1}", "key", "empty");
  bad_line("{\"table\":\"T\",\"key\":[\"a\",\"\"],\"op\":\"delete\",\"version\":1}", "key[1]",
           "empty");
  bad_line("{\"table\":\"T\",\"key\":[[1]],\"op\":\"delete\",\"version\":1}", "key[0]", "expected");
  bad_line(UPSERT(",\"customer\":\"other\""), "customer",
           "\"other\" but the batch is for \"acme\"");
}

static void test_every_problem_of_a_line(void **state) {
  (void)state;
  /* one error per change, carrying all of its problems */
  bad_line("{\"table\":\"T-1\",\"key\":1,\"op\":\"delete\",\"version\":0,\"x\":1}", "x",
           "unknown field; also table: byte 2");
  bad_line("{\"table\":\"T-1\",\"key\":1,\"op\":\"delete\",\"version\":0,\"x\":1}", "x",
           "; also version: must be >= 1");
}

/* ------------------------------------------------------------ batches --- */

static char *big_batch(size_t lines, size_t bad_at, size_t *len) {
  size_t cap = lines * 256 + 1, at = 0;
  char *buf = malloc(cap);
  for (size_t i = 1; i <= lines; i++)
    at += (size_t)snprintf(
        buf + at, cap - at,
        "{\"table\":\"Contacts\",\"key\":%zu,\"op\":\"upsert\",\"version\":%d,\"id\":\"a-%zu\","
        "\"row\":{\"ContactID\":%zu,\"Name\":\"Name %zu\",\"Score\":%zu.5}}\n",
        i, i == bad_at ? 0 : 1, i, i, i, i);
  *len = at;
  return buf;
}

static void test_one_bad_line_in_10000(void **state) {
  (void)state;
  size_t len;
  char *buf = big_batch(10000, 7321, &len);
  ferry_decode_opts o = opts_for("acme", false);
  ferry_batch *b = NULL;
  ferry_error err;
  assert_int_equal(ferry_batch_decode(FERRY_FORMAT_NDJSON, buf, len, &o, &b, &err), FERRY_EINVAL);
  assert_string_equal(err.msg, "1 invalid change: line 7321: version: must be >= 1, got 0");
  assert_int_equal(ferry_batch_count(b), 0);
  assert_int_equal(ferry_batch_error_count(b), 1);
  assert_int_equal(ferry_batch_errors(b)[0].line, 7321);
  assert_string_equal(ferry_batch_errors(b)[0].field, "version");
  ferry_batch_free(b);

  o.skip_invalid = true;
  assert_int_equal(ferry_batch_decode(FERRY_FORMAT_NDJSON, buf, len, &o, &b, &err), FERRY_OK);
  assert_int_equal(ferry_batch_count(b), 9999);
  assert_int_equal(ferry_batch_invalid_total(b), 1);
  const ferry_change_ref *r = ferry_batch_changes(b);
  assert_memory_equal(r[7319].id, "a-7320", 6);
  assert_memory_equal(r[7320].id, "a-7322", 6);
  ferry_batch_free(b);
  free(buf);
}

static void test_error_cap_and_summary(void **state) {
  (void)state;
  const char *text = "x\n" UPSERT("") "\ny\nz\n[]\n";
  ferry_decode_opts o = {"acme", false, 2};
  ferry_batch *b = NULL;
  ferry_error err;
  assert_int_equal(ferry_batch_decode(FERRY_FORMAT_NDJSON, text, strlen(text), &o, &b, &err),
                   FERRY_EINVAL);
  assert_int_equal(ferry_batch_error_count(b), 2);
  assert_int_equal(ferry_batch_invalid_total(b), 4);
  assert_int_equal(ferry_batch_errors(b)[1].line, 3);
  assert_non_null(strstr(err.msg, "4 invalid changes; first: line 1: invalid JSON"));
  ferry_batch_free(b);
  assert_int_equal(ferry_batch_decode((ferry_format)7, "", 0, &o, &b, &err), FERRY_EINVAL);
  assert_null(b);
}

/* Both NDJSON paths and both thread counts give the same batch. */
static void same_batches(const char *buf, size_t len, bool skip) {
  static const ingest_tuning tunes[] = {{1, true}, {1, false}, {2, true}, {2, false}};
  ferry_decode_opts o = opts_for("acme", skip);
  ferry_batch *b[4];
  ferry_status st[4];
  ferry_error err;
  for (int i = 0; i < 4; i++)
    st[i] = ingest_batch_decode(FERRY_FORMAT_NDJSON, buf, len, &o, &tunes[i], &b[i], &err);
  for (int i = 1; i < 4; i++) {
    assert_int_equal(st[i], st[0]);
    assert_int_equal(ferry_batch_count(b[i]), ferry_batch_count(b[0]));
    assert_int_equal(ferry_batch_error_count(b[i]), ferry_batch_error_count(b[0]));
    assert_int_equal(ferry_batch_invalid_total(b[i]), ferry_batch_invalid_total(b[0]));
    for (size_t k = 0; k < ferry_batch_count(b[0]); k++) {
      const ferry_change_ref *x = &ferry_batch_changes(b[0])[k], *y = &ferry_batch_changes(b[i])[k];
      assert_int_equal(x->pb_len, y->pb_len);
      assert_memory_equal(x->pb, y->pb, x->pb_len);
    }
    for (size_t k = 0; k < ferry_batch_error_count(b[0]); k++) {
      const ferry_change_error *x = &ferry_batch_errors(b[0])[k], *y = &ferry_batch_errors(b[i])[k];
      assert_int_equal(x->line, y->line);
      assert_string_equal(x->field, y->field);
      assert_string_equal(x->reason, y->reason);
      assert_ptr_equal(x->text, y->text);
    }
  }
  for (int i = 0; i < 4; i++)
    ferry_batch_free(b[i]);
}

static void test_fast_path_and_threads_agree(void **state) {
  (void)state;
  /* a big batch with errors in both halves */
  size_t len;
  char *buf = big_batch(60000, 0, &len);
  memcpy(strstr(buf, "\"version\":1,\"id\":\"a-17\""), "\"version\":0", 11);
  memcpy(strstr(buf, "\"version\":1,\"id\":\"a-55555\""), "\"version\":0", 11);
  same_batches(buf, len, false);
  same_batches(buf, len, true);
  free(buf);
  /* odd but valid lines, which the fast path takes or leaves to jansson */
  const char *odd = " { \"row\" : { \"A\" : 1 , \"B\" : [ ] } , \"table\":\"T\"}\n" UPSERT(
      ",\"id\":\"\\u00e9\\ud83d\\ude00\"") "\n" HEAD
                                           "\"row\":{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,"
                                           "\"f\":6,\"g\":7,\"h\":8,\"i\":9,\"j\":10,\"k\":11,"
                                           "\"l\":12,\"m\":13,\"n\":14,\"o\":15,\"p\":16,\"q\":17,"
                                           "\"r\":18,\"a\":19}}\n" HEAD
                                           "\"row\":{\"x\\u0041\":1,\"xA\":2}}\n"
                                           "{\"t\\u0061ble\":\"T\",\"key\":[\"a\",-0],\"op\":"
                                           "\"update\",\"version\":1,\"row\":{\"v\":-0,\"w\":1E+2,"
                                           "\"y\":0.0000001e-400}}\n" HEAD
                                           "\"row\":{\"A\":01}}\n" HEAD "\"row\":{\"A\":1.}}\n";
  same_batches(odd, strlen(odd), true);
  same_batches(odd, strlen(odd), false);
}

/* ----------------------------------------------------------- protobuf --- */

typedef struct pb_builder {
  Ferry__V1__ChangeBatch batch;
  Ferry__V1__Change changes[4];
  Ferry__V1__Change *change_ptrs[4];
  Ferry__V1__Column cols[4][3];
  Ferry__V1__Column *col_ptrs[4][3];
  Ferry__V1__Value vals[4][3];
} pb_builder;

/* Four valid changes: two upserts with three columns, a delete, an upsert. */
static void pb_init(pb_builder *p) {
  ferry__v1__change_batch__init(&p->batch);
  p->batch.n_changes = 4;
  p->batch.changes = p->change_ptrs;
  for (int i = 0; i < 4; i++) {
    Ferry__V1__Change *c = &p->changes[i];
    ferry__v1__change__init(c);
    p->change_ptrs[i] = c;
    c->table = "Contacts";
    c->key = i == 1 ? "a|b" : "7";
    c->op = i == 2 ? FERRY__V1__OP__OP_DELETE : FERRY__V1__OP__OP_UPSERT;
    c->version = (uint64_t)i + 1;
    c->n_row = i == 2 ? 0 : 3;
    c->row = p->col_ptrs[i];
    for (int k = 0; k < 3; k++) {
      ferry__v1__column__init(&p->cols[i][k]);
      ferry__v1__value__init(&p->vals[i][k]);
      p->col_ptrs[i][k] = &p->cols[i][k];
      p->cols[i][k].value = &p->vals[i][k];
    }
    p->cols[i][0].name = "S";
    p->vals[i][0].kind_case = FERRY__V1__VALUE__KIND_STRING_VALUE;
    p->vals[i][0].string_value = "text";
    p->cols[i][1].name = "I";
    p->vals[i][1].kind_case = FERRY__V1__VALUE__KIND_INT_VALUE;
    p->vals[i][1].int_value = -5;
    p->cols[i][2].name = "N";
    p->cols[i][2].value = NULL; /* an absent value is null */
  }
  p->changes[0].id = "first";
  p->changes[0].at = "2026-11-24T10:00:00Z";
}

static ferry_status pb_decode(const pb_builder *p, bool skip, ferry_batch **b) {
  size_t n = ferry__v1__change_batch__get_packed_size(&p->batch);
  uint8_t *buf = malloc(n + 1);
  ferry__v1__change_batch__pack(&p->batch, buf);
  ferry_decode_opts o = opts_for("acme", skip);
  ferry_error err;
  ferry_status st = ferry_batch_decode(FERRY_FORMAT_PROTOBUF, (const char *)buf, n, &o, b, &err);
  /* protobuf errors carry no text, and the packed changes are the batch's
   * own: both outlive the buffer, which goes now */
  for (size_t i = 0; *b && i < ferry_batch_error_count(*b); i++)
    assert_null(ferry_batch_errors(*b)[i].text);
  free(buf);
  return st;
}

static void pb_bad(pb_builder *p, uint64_t index, const char *field, const char *want) {
  ferry_batch *b = NULL;
  assert_int_equal(pb_decode(p, true, &b), FERRY_OK);
  assert_int_equal(ferry_batch_error_count(b), 1);
  const ferry_change_error *e = ferry_batch_errors(b);
  if (e->line != index || strcmp(e->field, field) != 0 || !strstr(e->reason, want))
    fail_msg("got %llu %s: %s; want %llu %s: ...%s...", (unsigned long long)e->line, e->field,
             e->reason, (unsigned long long)index, field, want);
  assert_int_equal(ferry_batch_count(b), index == 0 ? 0 : 3);
  ferry_batch_free(b);
}

static void test_protobuf_round_trip(void **state) {
  (void)state;
  pb_builder p;
  pb_init(&p);
  p.batch.customer = "acme";
  p.changes[3].customer = "acme";
  ferry_batch *b = NULL;
  assert_int_equal(pb_decode(&p, false, &b), FERRY_OK);
  assert_int_equal(ferry_batch_count(b), 4);
  Ferry__V1__Change *c = unpack(b, 0);
  assert_string_equal(c->id, "first");
  assert_string_equal(c->at, "2026-11-24T10:00:00Z");
  assert_int_equal(c->n_row, 3);
  assert_string_equal(c->row[0]->value->string_value, "text");
  assert_int_equal(c->row[1]->value->int_value, -5);
  assert_int_equal(c->row[2]->value->kind_case, FERRY__V1__VALUE__KIND_NULL_VALUE);
  ferry__v1__change__free_unpacked(c, NULL);
  c = unpack(b, 1);
  assert_string_equal(c->id, "Contacts/a|b/2/upsert");
  ferry__v1__change__free_unpacked(c, NULL);
  c = unpack(b, 2);
  assert_string_equal(c->id, "Contacts/7/3/delete");
  assert_int_equal(c->op, FERRY__V1__OP__OP_DELETE);
  ferry__v1__change__free_unpacked(c, NULL);
  c = unpack(b, 3);
  assert_string_equal(c->customer, "");
  ferry__v1__change__free_unpacked(c, NULL);
  ferry_batch_free(b);
}

static void test_protobuf_errors(void **state) {
  (void)state;
  pb_builder p;
  pb_init(&p);
  p.changes[1].key = "\xff";
  pb_bad(&p, 2, "key", "invalid UTF-8");
  pb_init(&p);
  p.cols[2 - 1][0].name = "\xc3";
  pb_bad(&p, 2, "row[0]", "invalid UTF-8");
  pb_init(&p);
  p.vals[3][0].string_value = "ok\xed\xa0\x80";
  pb_bad(&p, 4, "row.S", "invalid UTF-8");
  pb_init(&p);
  p.cols[0][2].name = "S";
  pb_bad(&p, 1, "row.S", "duplicate column name");
  pb_init(&p);
  p.changes[0].op = FERRY__V1__OP__OP_UNSPECIFIED;
  pb_bad(&p, 1, "op", "required");
  pb_init(&p);
  p.changes[0].op = (Ferry__V1__Op)9;
  pb_bad(&p, 1, "op", "unknown value 9");
  pb_init(&p);
  p.changes[3].version = 0;
  pb_bad(&p, 4, "version", ">= 1");
  pb_init(&p);
  p.changes[2].n_row = 1;
  pb_bad(&p, 3, "row", "not allowed on delete");
  pb_init(&p);
  p.changes[1].n_row = 0;
  pb_bad(&p, 2, "row", "required for upsert");
  pb_init(&p);
  p.changes[1].table = "a b";
  pb_bad(&p, 2, "table", "byte 2");
  pb_init(&p);
  p.changes[1].table = "";
  pb_bad(&p, 2, "table", "required");
  pb_init(&p);
  p.changes[1].at = "soon";
  pb_bad(&p, 2, "at", "RFC 3339");
  pb_init(&p);
  p.changes[1].customer = "other";
  pb_bad(&p, 2, "customer", "\"other\" but the batch is for \"acme\"");
  pb_init(&p);
  p.vals[0][1].kind_case = FERRY__V1__VALUE__KIND_DOUBLE_VALUE;
  p.vals[0][1].double_value = 1.0 / 0.0;
  pb_bad(&p, 1, "row.I", "not a finite number");
  pb_init(&p);
  p.batch.customer = "other";
  pb_bad(&p, 0, "customer", "batch is for \"acme\"");
}

static void test_protobuf_threads_agree(void **state) {
  (void)state;
  /* 1,000 changes, some invalid, as one batch; one thread and two agree */
  enum { N = 1000 };
  Ferry__V1__ChangeBatch batch = FERRY__V1__CHANGE_BATCH__INIT;
  Ferry__V1__Change *changes = calloc(N, sizeof *changes), **ptrs = calloc(N, sizeof *ptrs);
  Ferry__V1__Column col = FERRY__V1__COLUMN__INIT, *cols[1] = {&col};
  col.name = "A";
  char keys[N][8];
  for (int i = 0; i < N; i++) {
    ferry__v1__change__init(&changes[i]);
    ptrs[i] = &changes[i];
    snprintf(keys[i], sizeof keys[i], "%d", i);
    changes[i].table = "T";
    changes[i].key = keys[i];
    changes[i].op = FERRY__V1__OP__OP_UPSERT;
    changes[i].version = i % 97 == 3 ? 0 : 1;
    changes[i].n_row = 1;
    changes[i].row = cols;
  }
  batch.n_changes = N;
  batch.changes = ptrs;
  size_t len = ferry__v1__change_batch__get_packed_size(&batch);
  uint8_t *buf = malloc(len);
  ferry__v1__change_batch__pack(&batch, buf);
  ferry_decode_opts o = opts_for("acme", true);
  ferry_batch *b[2];
  ferry_error err;
  for (int t = 0; t < 2; t++) {
    ingest_tuning tune = {t + 1, false};
    assert_int_equal(
        ingest_batch_decode(FERRY_FORMAT_PROTOBUF, (char *)buf, len, &o, &tune, &b[t], &err),
        FERRY_OK);
  }
  assert_int_equal(ferry_batch_invalid_total(b[0]), 11);
  assert_int_equal(ferry_batch_count(b[0]), N - 11);
  assert_int_equal(ferry_batch_count(b[1]), N - 11);
  assert_int_equal(ferry_batch_error_count(b[1]), 11);
  for (size_t k = 0; k < 11; k++) {
    assert_int_equal(ferry_batch_errors(b[1])[k].line, 4 + 97 * k);
    assert_int_equal(ferry_batch_errors(b[0])[k].line, 4 + 97 * k);
  }
  for (size_t k = 0; k < ferry_batch_count(b[0]); k++)
    assert_memory_equal(ferry_batch_changes(b[0])[k].pb, ferry_batch_changes(b[1])[k].pb,
                        ferry_batch_changes(b[0])[k].pb_len);
  ferry_batch_free(b[0]);
  ferry_batch_free(b[1]);
  free(buf);
  free(ptrs);
  free(changes);
}

static void test_protobuf_raw_bytes(void **state) {
  (void)state;
  ferry_decode_opts o = opts_for("acme", true);
  ferry_batch *b = NULL;
  ferry_error err;
  /* not a batch at all */
  const char junk[] = "\x01\x02garbage";
  assert_int_equal(ferry_batch_decode(FERRY_FORMAT_PROTOBUF, junk, sizeof junk - 1, &o, &b, &err),
                   FERRY_OK);
  assert_int_equal(ferry_batch_count(b), 0);
  assert_int_equal(ferry_batch_error_count(b), 1);
  assert_int_equal(ferry_batch_errors(b)[0].line, 0);
  assert_non_null(strstr(ferry_batch_errors(b)[0].reason, "not a ferry.v1.ChangeBatch"));
  ferry_batch_free(b);
  o.skip_invalid = false;
  assert_int_equal(ferry_batch_decode(FERRY_FORMAT_PROTOBUF, junk, sizeof junk - 1, &o, &b, &err),
                   FERRY_EINVAL);
  assert_non_null(strstr(err.msg, "1 invalid change: the batch: not a ferry.v1.ChangeBatch"));
  ferry_batch_free(b);
  /* a framed batch whose second change is broken, and whose first has an
   * embedded NUL that protobuf-c alone would silently cut off */
  static const char two[] = "\x12\x16"
                            "\x0a\x01T" /* table */
                            "\x12\x05"
                            "a\0bcd"           /* key with a NUL */
                            "\x18\x02\x20\x01" /* op delete, version 1 */
                            "\x2a\x06"
                            "ok-id!"            /* id */
                            "\x12\x03\x0a\x05T" /* a Change whose table runs past its end */
                            "\x12\x0c"
                            "\x0a\x01T\x12\x01k\x18\x02\x20\x01"
                            "\x48\x05"; /* unknown field 9 */
  o.skip_invalid = true;
  assert_int_equal(ferry_batch_decode(FERRY_FORMAT_PROTOBUF, two, sizeof two - 1, &o, &b, &err),
                   FERRY_OK);
  assert_int_equal(ferry_batch_count(b), 0);
  assert_int_equal(ferry_batch_error_count(b), 3);
  const ferry_change_error *e = ferry_batch_errors(b);
  assert_int_equal(e[0].line, 1);
  assert_string_equal(e[0].field, "key");
  assert_string_equal(e[0].reason, "contains a NUL byte");
  assert_int_equal(e[1].line, 2);
  assert_non_null(strstr(e[1].reason, "does not decode as ferry.v1.Change"));
  assert_int_equal(e[2].line, 3);
  assert_non_null(strstr(e[2].reason, "unknown field number 9"));
  ferry_batch_free(b);
  /* an empty buffer is an empty batch */
  assert_int_equal(ferry_batch_decode(FERRY_FORMAT_PROTOBUF, NULL, 0, &o, &b, &err), FERRY_OK);
  assert_int_equal(ferry_batch_count(b), 0);
  ferry_batch_free(b);
}

/* ------------------------------------------------------------- limits --- */

static void test_arena_cap(void **state) {
  (void)state;
  arena a;
  arena_init(&a, 64, 100);
  void *x = arena_alloc(&a, 40, 1);
  assert_non_null(x);
  assert_non_null(arena_alloc(&a, 16, 16)); /* same chunk, at 48 */
  assert_null(arena_alloc(&a, 64, 1));      /* a second chunk would pass the cap */
  assert_true(a.over_cap);
  assert_non_null(arena_alloc(&a, 30, 1)); /* a smaller one still fits */
  assert_false(a.over_cap);
  arena_reset(&a);
  assert_true(a.total <= 100);
  assert_non_null(arena_alloc(&a, 16, 16));
  arena_free(&a);
}

static void test_protobuf_memory_cap(void **state) {
  (void)state;
  /* 100,000 empty columns: unpacked they need far more than the scratch
   * arena allows per wire byte, so the change is refused, not the process */
  size_t ncols = 100000, len = 0;
  uint8_t *buf = malloc(ncols * 2 + 64);
  uint8_t *change = buf + 8;
  size_t n = 0;
  memcpy(change + n, "\x0a\x01T\x12\x01k\x18\x01\x20\x01", 10);
  n += 10;
  for (size_t i = 0; i < ncols; i++)
    change[n++] = 0x3a, change[n++] = 0x00;
  buf[len++] = 0x12;
  for (size_t v = n;; v >>= 7) {
    buf[len++] = (uint8_t)(v >= 0x80 ? (v & 0x7F) | 0x80 : v);
    if (v < 0x80) break;
  }
  memmove(buf + len, change, n);
  len += n;
  ferry_decode_opts o = opts_for("acme", true);
  ferry_batch *b = NULL;
  ferry_error err;
  assert_int_equal(ferry_batch_decode(FERRY_FORMAT_PROTOBUF, (char *)buf, len, &o, &b, &err),
                   FERRY_OK);
  assert_int_equal(ferry_batch_count(b), 0);
  assert_int_equal(ferry_batch_error_count(b), 1);
  /* either refused for memory or for the empty names, never crashing */
  assert_int_equal(ferry_batch_errors(b)[0].line, 1);
  ferry_batch_free(b);
  free(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_basic_upsert),
      cmocka_unit_test(test_key_forms),
      cmocka_unit_test(test_op_aliases_and_default_id),
      cmocka_unit_test(test_at_forms),
      cmocka_unit_test(test_value_types),
      cmocka_unit_test(test_crlf_and_blank_lines),
      cmocka_unit_test(test_malformed_json),
      cmocka_unit_test(test_invalid_utf8),
      cmocka_unit_test(test_unknown_and_wrong_types),
      cmocka_unit_test(test_nested_values),
      cmocka_unit_test(test_versions),
      cmocka_unit_test(test_oversize),
      cmocka_unit_test(test_rows_and_keys),
      cmocka_unit_test(test_every_problem_of_a_line),
      cmocka_unit_test(test_one_bad_line_in_10000),
      cmocka_unit_test(test_error_cap_and_summary),
      cmocka_unit_test(test_fast_path_and_threads_agree),
      cmocka_unit_test(test_protobuf_round_trip),
      cmocka_unit_test(test_protobuf_errors),
      cmocka_unit_test(test_protobuf_threads_agree),
      cmocka_unit_test(test_protobuf_raw_bytes),
      cmocka_unit_test(test_arena_cap),
      cmocka_unit_test(test_protobuf_memory_cap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
