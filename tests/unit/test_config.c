/*
 * Tests for the configuration loader (SPEC §6): defaults, a full file, every
 * kind of error with its exact "file:line: key" message, relative paths,
 * per-customer overrides, and the free of half-built configs (run under ASan
 * to see leaks). Files are written to a fresh temporary folder, which is also
 * the working directory, so messages name them as "ferry.yaml".
 *
 * Out-of-memory paths are tested by replacing malloc (through glibc's
 * __libc_* entry points) with one that fails the n-th call, for every n; that
 * replacement would fight AddressSanitizer's own, so it is left out there.
 * It also counts live allocations, to find what a failure path leaks. libyaml
 * 0.2.5 itself leaks on some of its failure paths (a node whose push onto the
 * document fails), so leaks are forgiven when the failed allocation was
 * libyaml's; ours must not leak.
 */
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/path.h"
#include "ferry/config.h"

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif

/* ---- failing malloc ------------------------------------------------------- */

#ifndef HAVE_ASAN
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
void __libc_free(void *p);

static long fail_in = -1; /* allocations until the one that fails; -1: none */
static int counting;      /* count live allocations while set */
static long live;
static int failed_in_libyaml;

static int called_from_libyaml(void) {
  void *frames[32];
  int n = backtrace(frames, 32);
  for (int i = 0; i < n; i++) {
    Dl_info info;
    if (dladdr(frames[i], &info) && info.dli_fname && strstr(info.dli_fname, "libyaml")) return 1;
  }
  return 0;
}

static int should_fail(void) {
  if (fail_in < 0 || fail_in-- > 0) return 0;
  failed_in_libyaml = called_from_libyaml();
  errno = ENOMEM; /* as the real one does; realpath passes it on */
  return 1;
}

void *malloc(size_t n) {
  void *p = should_fail() ? NULL : __libc_malloc(n);
  if (p && counting) live++;
  return p;
}

void *calloc(size_t n, size_t size) {
  void *p = should_fail() ? NULL : __libc_calloc(n, size);
  if (p && counting) live++;
  return p;
}

void *realloc(void *old, size_t n) {
  void *p = should_fail() ? NULL : __libc_realloc(old, n);
  if (counting) live += (p && !old) - (!p && old && n == 0);
  return p;
}

void free(void *p) {
  if (p && counting) live--;
  __libc_free(p);
}
#endif

/* ---- fixtures ------------------------------------------------------------- */

static char tmpdir[PATH_MAX]; /* realpath'd */
static char oldcwd[PATH_MAX];

static int group_setup(void **state) {
  char tmpl[] = "/tmp/ferry-test-config-XXXXXX";
  (void)state;
  if (!mkdtemp(tmpl) || !realpath(tmpl, tmpdir)) return -1;
  if (!getcwd(oldcwd, sizeof oldcwd) || chdir(tmpdir) != 0) return -1;
  return 0;
}

static int group_teardown(void **state) {
  char cmd[PATH_MAX + 16];
  (void)state;
  if (chdir(oldcwd) != 0) return -1;
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const char *text, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(text, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
}

/* Writes text to ferry.yaml and loads it. */
static ferry_status load_text(ferry_config **cfg, const char *text, ferry_error *err) {
  write_file("ferry.yaml", text, strlen(text));
  ferry_error_clear(err);
  return ferry_config_load(cfg, "ferry.yaml", err);
}

static char *in_tmp(const char *rel) {
  static char buf[PATH_MAX * 2];
  snprintf(buf, sizeof buf, "%s/%s", tmpdir, rel);
  return buf;
}

/* ---- valid files ---------------------------------------------------------- */

static void test_minimal_defaults(void **state) {
  ferry_config *cfg = NULL;
  ferry_error err;
  (void)state;

  assert_int_equal(load_text(&cfg,
                             "mapping: mapping.yaml\n"
                             "cloud:\n"
                             "  base_url: http://127.0.0.1:3000\n",
                             &err),
                   FERRY_OK);
  assert_string_equal(cfg->path, in_tmp("ferry.yaml"));
  assert_string_equal(cfg->mapping, in_tmp("mapping.yaml"));
  assert_null(cfg->data);
  assert_string_equal(cfg->cloud.base_url, "http://127.0.0.1:3000");
  assert_null(cfg->cloud.token_env);
  assert_string_equal(cfg->cloud.id_field, "id");
  assert_string_equal(cfg->cloud.external_key_field, "legacy_key");
  assert_int_equal(cfg->cloud.concurrency, 16);
  assert_int_equal(cfg->cloud.timeout_ms, 10000);
  assert_int_equal(cfg->cloud.max_attempts, 8);
  assert_true(cfg->cloud.rate_limit == 0.0);
  assert_string_equal(cfg->service.listen, "127.0.0.1:8470");
  assert_string_equal(cfg->service.admin_token_env, "FERRY_ADMIN_TOKEN");
  assert_int_equal(cfg->service.max_batch_bytes, 67108864);
  assert_int_equal(cfg->ncustomers, 0);
  assert_null(ferry_config_customer(cfg, "acme"));
  assert_int_equal(ferry_config_line(cfg, "mapping"), 1);
  assert_int_equal(ferry_config_line(cfg, "cloud.base_url"), 3);
  assert_int_equal(ferry_config_line(cfg, "cloud.concurrency"), 0);
  ferry_config_free(cfg);
}

/* The example of SPEC §6, plus rate_limit. */
static const char full_yaml[] =
    "mapping: mapping.yaml\n"
    "data: ./ferry-data                    # --data overrides\n"
    "cloud:\n"
    "  base_url: \"http://127.0.0.1:3000\"   # \"{customer}\" in it is replaced\n"
    "  token_env: FERRY_CLOUD_TOKEN\n"
    "  id_field: uuid\n"
    "  external_key_field: old_key\n"
    "  concurrency: 4\n"
    "  timeout_ms: 2500\n"
    "  max_attempts: 3\n"
    "  rate_limit: 12.5\n"
    "service:\n"
    "  listen: 0.0.0.0:9000\n"
    "  admin_token_env: MY_ADMIN\n"
    "  max_batch_bytes: 1048576\n"
    "customers:                            # optional per-customer overrides\n"
    "  acme:\n"
    "    base_url: \"https://cloud.example/accounts/77\"\n"
    "    token_env: ACME_CLOUD_TOKEN\n"
    "    ingest_token_env: ACME_INGEST_TOKEN\n"
    "    feed_url: \"http://legacy-sync.internal/changes?customer=acme\"   # pull mode\n"
    "  globex: {}\n";

static void test_full(void **state) {
  ferry_config *cfg = NULL;
  ferry_error err;
  const ferry_customer_config *c;
  (void)state;

  assert_int_equal(load_text(&cfg, full_yaml, &err), FERRY_OK);
  assert_string_equal(cfg->data, in_tmp("ferry-data"));
  assert_string_equal(cfg->cloud.token_env, "FERRY_CLOUD_TOKEN");
  assert_string_equal(cfg->cloud.id_field, "uuid");
  assert_string_equal(cfg->cloud.external_key_field, "old_key");
  assert_int_equal(cfg->cloud.concurrency, 4);
  assert_int_equal(cfg->cloud.timeout_ms, 2500);
  assert_int_equal(cfg->cloud.max_attempts, 3);
  assert_true(cfg->cloud.rate_limit == 12.5);
  assert_string_equal(cfg->service.listen, "0.0.0.0:9000");
  assert_string_equal(cfg->service.admin_token_env, "MY_ADMIN");
  assert_int_equal(cfg->service.max_batch_bytes, 1048576);
  assert_int_equal(cfg->ncustomers, 2);
  c = ferry_config_customer(cfg, "acme");
  assert_non_null(c);
  assert_string_equal(c->id, "acme");
  assert_string_equal(c->base_url, "https://cloud.example/accounts/77");
  assert_string_equal(c->token_env, "ACME_CLOUD_TOKEN");
  assert_string_equal(c->ingest_token_env, "ACME_INGEST_TOKEN");
  assert_string_equal(c->feed_url, "http://legacy-sync.internal/changes?customer=acme");
  c = ferry_config_customer(cfg, "globex");
  assert_non_null(c);
  assert_null(c->base_url);
  assert_null(c->token_env);
  assert_null(c->ingest_token_env);
  assert_null(c->feed_url);
  assert_int_equal(ferry_config_line(cfg, "cloud.rate_limit"), 11);
  assert_int_equal(ferry_config_line(cfg, "customers.acme"), 17);
  assert_int_equal(ferry_config_line(cfg, "customers.acme.feed_url"), 21);
  assert_int_equal(ferry_config_line(cfg, "customers.globex"), 22);
  assert_int_equal(ferry_config_line(cfg, "nope"), 0);
  ferry_config_free(cfg);
}

/* Nulls, flow style, block scalars, and anchors all read as plain YAML says. */
static void test_yaml_forms(void **state) {
  ferry_config *cfg = NULL;
  ferry_error err;
  (void)state;

  assert_int_equal(load_text(&cfg,
                             "---\n"
                             "mapping: 'm.yaml'\n"
                             "data: ~\n"
                             "cloud: {base_url: &u 'http://x/{customer}', token_env: null,\n"
                             "        concurrency: 1024, rate_limit: 1e3}\n"
                             "service:\n"
                             "customers:\n"
                             "  a: &o {token_env: SHARED}\n"
                             "  b: *o\n"
                             "  c:\n"
                             "  d: {feed_url: *u}\n"
                             "...\n",
                             &err),
                   FERRY_OK);
  assert_null(cfg->data);
  assert_null(cfg->cloud.token_env);
  assert_int_equal(cfg->cloud.concurrency, 1024);
  assert_true(cfg->cloud.rate_limit == 1000.0);
  assert_string_equal(cfg->service.listen, "127.0.0.1:8470");
  assert_int_equal(cfg->ncustomers, 4);
  assert_string_equal(ferry_config_customer(cfg, "b")->token_env, "SHARED");
  assert_null(ferry_config_customer(cfg, "c")->token_env);
  assert_string_equal(ferry_config_customer(cfg, "d")->feed_url, "http://x/{customer}");
  ferry_config_free(cfg);

  /* `customers:` with nothing under it: no customers */
  assert_int_equal(load_text(&cfg, "mapping: m\ncloud:\n  base_url: https://x\ncustomers:\n", &err),
                   FERRY_OK);
  assert_int_equal(cfg->ncustomers, 0);
  assert_null(cfg->customers);
  ferry_config_free(cfg);
}

/* ---- errors --------------------------------------------------------------- */

typedef struct bad_case {
  const char *yaml;
  const char *msg; /* exact */
} bad_case;

#define MIN "mapping: m.yaml\n"
#define CLOUD "cloud:\n  base_url: http://x\n"

static const bad_case bad_cases[] = {
    /* wrong types */
    {MIN CLOUD "  concurrency: many\n",
     "ferry.yaml:4: cloud.concurrency: expected an integer, got \"many\""},
    {MIN CLOUD "  concurrency: \"16\"\n",
     "ferry.yaml:4: cloud.concurrency: expected an integer, got the quoted string \"16\""},
    {MIN CLOUD "  timeout_ms: 2.5\n",
     "ferry.yaml:4: cloud.timeout_ms: expected an integer, got \"2.5\""},
    {MIN CLOUD "  max_attempts: [1]\n",
     "ferry.yaml:4: cloud.max_attempts: expected an integer, got a sequence"},
    {MIN CLOUD "  rate_limit: fast\n",
     "ferry.yaml:4: cloud.rate_limit: expected a number, got \"fast\""},
    {MIN CLOUD "  rate_limit: .inf\n",
     "ferry.yaml:4: cloud.rate_limit: expected a number, got \".inf\""},
    {MIN CLOUD "  rate_limit: 1e999\n",
     "ferry.yaml:4: cloud.rate_limit: expected a finite number, got \"1e999\""},
    {"mapping: {a: b}\n" CLOUD, "ferry.yaml:1: mapping: expected a path, got a mapping"},
    {MIN "cloud: http://x\n", "ferry.yaml:2: cloud: expected a mapping, got \"http://x\""},
    {MIN "cloud:\n  - base_url: http://x\n",
     "ferry.yaml:3: cloud: expected a mapping, got a sequence"},
    {"- a\n- b\n", "ferry.yaml:1: expected a mapping, got a sequence"},
    {"? [a]\n: b\n", "ferry.yaml:1: keys must be strings, got a sequence"},
    {MIN CLOUD "customers: [acme]\n",
     "ferry.yaml:4: customers: expected a mapping of customer ids, got a sequence"},
    {MIN CLOUD "customers:\n  acme: yes\n",
     "ferry.yaml:5: customers.acme: expected a mapping, got \"yes\""},
    /* bounds */
    {MIN CLOUD "  concurrency: 0\n",
     "ferry.yaml:4: cloud.concurrency: must be between 1 and 1024, got 0"},
    {MIN CLOUD "  concurrency: 1025\n",
     "ferry.yaml:4: cloud.concurrency: must be between 1 and 1024, got 1025"},
    {MIN CLOUD "  timeout_ms: 0\n", "ferry.yaml:4: cloud.timeout_ms: must be at least 1, got 0"},
    {MIN CLOUD "  max_attempts: 2147483648\n",
     "ferry.yaml:4: cloud.max_attempts: must be at most 2147483647, got 2147483648"},
    {MIN CLOUD "service:\n  max_batch_bytes: -1\n",
     "ferry.yaml:5: service.max_batch_bytes: must be at least 1, got -1"},
    {MIN CLOUD "service:\n  max_batch_bytes: 99999999999999999999\n",
     "ferry.yaml:5: service.max_batch_bytes: must be at most 9223372036854775807, got "
     "99999999999999999999"},
    {MIN CLOUD "  rate_limit: -0.5\n",
     "ferry.yaml:4: cloud.rate_limit: must be at least 0, got -0.5"},
    /* string forms */
    {MIN "cloud:\n  base_url: ftp://x\n",
     "ferry.yaml:3: cloud.base_url: expected an http:// or https:// URL, got \"ftp://x\""},
    {MIN "cloud:\n  base_url: \"http://a b\"\n",
     "ferry.yaml:3: cloud.base_url: expected an http:// or https:// URL, got \"http://a b\""},
    {MIN CLOUD "  id_field: \"\"\n", "ferry.yaml:4: cloud.id_field: must not be empty"},
    {MIN CLOUD "  id_field: \"a\\0b\"\n", "ferry.yaml:4: cloud.id_field: contains a NUL byte"},
    {MIN CLOUD "service:\n  listen: 8470\n",
     "ferry.yaml:5: service.listen: expected host:port, got \"8470\""},
    {MIN CLOUD "service:\n  listen: \"localhost:99999\"\n",
     "ferry.yaml:5: service.listen: expected host:port, got \"localhost:99999\""},
    /* the value is not echoed: it looks like the secret itself */
    {MIN CLOUD "  token_env: sk-live-12345\n",
     "ferry.yaml:4: cloud.token_env: expected the name of an environment variable (letters, "
     "digits and _, not starting with a digit); the secret itself belongs in that variable"},
    /* keys */
    {MIN "cloud:\n  bas_url: http://x\n", "ferry.yaml:3: cloud.bas_url: unknown key"},
    {"mappings: m\n", "ferry.yaml:1: mappings: unknown key"},
    {MIN CLOUD "customers:\n  acme:\n    base_uri: http://y\n",
     "ferry.yaml:6: customers.acme.base_uri: unknown key"},
    {MIN "cloud:\n  \"b\\nad\": 1\n", "ferry.yaml:3: cloud.b\\x0aad: unknown key"},
    {MIN CLOUD "  timeout_ms: 5\n  max_attempts: 2\n  timeout_ms: 6\n",
     "ferry.yaml:6: cloud.timeout_ms: duplicate key (first at line 4)"},
    {MIN CLOUD MIN, "ferry.yaml:4: mapping: duplicate key (first at line 1)"},
    {MIN CLOUD "customers:\n  b: {}\n  a: {}\n  b: {}\n  a: {}\n",
     "ferry.yaml:7: customers.b: duplicate key (first at line 5)"},
    {MIN CLOUD "customers:\n  \"bad id\": {}\n",
     "ferry.yaml:5: customers.bad id: invalid customer id: 1 to 128 of the characters A-Z a-z "
     "0-9 _ . -"},
    {MIN CLOUD "customers:\n  a/b: {}\n",
     "ferry.yaml:5: customers.a/b: invalid customer id: 1 to 128 of the characters A-Z a-z "
     "0-9 _ . -"},
    /* missing */
    {CLOUD, "ferry.yaml: missing required key mapping"},
    {MIN, "ferry.yaml: missing required key cloud"},
    {MIN "\ncloud:\n  token_env: T\n", "ferry.yaml:3: missing required key cloud.base_url"},
    {MIN "cloud:\n", "ferry.yaml:2: missing required key cloud.base_url"},
    {"mapping:\n" CLOUD, "ferry.yaml:1: mapping: expected a path, got null"},
    {MIN "cloud:\n  base_url: ~\n", "ferry.yaml:3: cloud.base_url: expected an http:// or "
                                    "https:// URL, got null"},
    /* the file as a whole */
    {"", "ferry.yaml: the file is empty"},
    {"# nothing but a comment\n\n", "ferry.yaml: the file is empty"},
    {"---\n", "ferry.yaml: the file is empty"},
    {MIN CLOUD "---\nmapping: other\n", "ferry.yaml:4: only one YAML document is allowed"},
};

static void test_errors(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
    ferry_config *cfg = (ferry_config *)&cfg; /* must be reset to NULL */
    ferry_error err;
    ferry_status st = load_text(&cfg, bad_cases[i].yaml, &err);
    if (st != FERRY_ECONFIG || strcmp(err.msg, bad_cases[i].msg) != 0)
      fail_msg("case %zu:\n%s\nwant: %s\ngot:  [%d] %s", i, bad_cases[i].yaml, bad_cases[i].msg, st,
               err.msg);
    assert_int_equal(err.code, FERRY_ECONFIG);
    assert_null(cfg);
  }
}

/* libyaml's own words may change between versions; ours and the place not. */
static void expect_prefix(const char *yaml, size_t len, const char *prefix, const char *part) {
  ferry_config *cfg = NULL;
  ferry_error err;
  ferry_error_clear(&err);
  write_file("ferry.yaml", yaml, len);
  assert_int_equal(ferry_config_load(&cfg, "ferry.yaml", &err), FERRY_ECONFIG);
  assert_null(cfg);
  if (strncmp(err.msg, prefix, strlen(prefix)) != 0 || !strstr(err.msg, part))
    fail_msg("want %s...%s, got %s", prefix, part, err.msg);
}

#define SQUARES "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
#define CLOSES "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"

static void test_yaml_errors(void **state) {
  static const char unterminated[] = MIN "cloud:\n  base_url: \"http://x\n  timeout_ms: 1\n";
  static const char bad_indent[] = MIN "cloud:\n  base_url: http://x\n concurrency: 2\n";
  static const char tab[] = MIN "cloud:\n\tbase_url: http://x\n";
  static const char alias[] = MIN "cloud: *nowhere\n";
  static const char utf8[] = MIN "cloud:\n  base_url: http://\xff\n";
  static const char after[] = MIN CLOUD "---\n[\n";
  (void)state;

  expect_prefix(unterminated, sizeof unterminated - 1, "ferry.yaml:5:1: YAML syntax error: ",
                "(while scanning a quoted scalar at line 3, column 13)");
  expect_prefix(bad_indent, sizeof bad_indent - 1,
                "ferry.yaml:4:2: YAML syntax error: ", "at line 1, column 1)");
  expect_prefix(tab, sizeof tab - 1, "ferry.yaml:3:1: YAML syntax error: ", "tab");
  expect_prefix(alias, sizeof alias - 1, "ferry.yaml:2:8: YAML syntax error: ", "alias");
  expect_prefix(utf8, sizeof utf8 - 1, "ferry.yaml:3: invalid text at byte 42: ", "UTF-8");
  expect_prefix(after, sizeof after - 1, "ferry.yaml:6:1: YAML syntax error: ", "");
}

/* libyaml slows with the square of the depth; the loader refuses to go deep */
static void test_nesting(void **state) {
  ferry_config *cfg = NULL;
  ferry_error err;
  char text[256];
  (void)state;

  /* the top mapping is level 1; 63 sequences more are fine, 64 are not */
  snprintf(text, sizeof text, MIN CLOUD "x: %.63s1%.63s\n", SQUARES, CLOSES);
  assert_int_equal(load_text(&cfg, text, &err), FERRY_ECONFIG);
  assert_string_equal(err.msg, "ferry.yaml:4: x: unknown key");
  snprintf(text, sizeof text, MIN CLOUD "x: %.64s1%.64s\n", SQUARES, CLOSES);
  assert_int_equal(load_text(&cfg, text, &err), FERRY_ECONFIG);
  assert_string_equal(err.msg, "ferry.yaml:4: nested deeper than 64 levels");
  assert_null(cfg);
}

/* libyaml checks each new anchor against all before it; the loader caps them */
static void test_anchors(void **state) {
  ferry_config *cfg = NULL;
  ferry_error err;
  char *text = malloc(32 * 1100);
  size_t n = 0;
  (void)state;

  assert_non_null(text);
  n += (size_t)sprintf(text + n, MIN CLOUD "x:\n");
  for (int i = 0; i < 1024; i++)
    n += (size_t)sprintf(text + n, "  - &a%d %d\n", i, i);
  assert_int_equal(load_text(&cfg, text, &err), FERRY_ECONFIG);
  assert_string_equal(err.msg, "ferry.yaml:4: x: unknown key");
  sprintf(text + n, "  - &last 1\n");
  assert_int_equal(load_text(&cfg, text, &err), FERRY_ECONFIG);
  assert_string_equal(err.msg, "ferry.yaml:1029: more than 1024 anchors");
  free(text);
}

static void test_io_errors(void **state) {
  ferry_config *cfg = NULL;
  ferry_error err;
  char *big;
  (void)state;

  assert_int_equal(ferry_config_load(&cfg, "missing.yaml", &err), FERRY_EIO);
  assert_string_equal(err.msg, "missing.yaml: cannot open: No such file or directory");
  assert_null(cfg);

  assert_int_equal(mkdir("adir", 0700), 0);
  assert_int_equal(ferry_config_load(&cfg, "adir", &err), FERRY_EIO);
  assert_string_equal(err.msg, "adir: cannot read: Is a directory");

  if (geteuid() != 0) { /* root reads anything */
    write_file("locked.yaml", "x: 1\n", 5);
    assert_int_equal(chmod("locked.yaml", 0), 0);
    assert_int_equal(ferry_config_load(&cfg, "locked.yaml", &err), FERRY_EIO);
    assert_string_equal(err.msg, "locked.yaml: cannot open: Permission denied");
  }

  /* the cap, both through a file and a buffer */
  big = malloc(FERRY_CONFIG_MAX_BYTES + 1);
  assert_non_null(big);
  memset(big, '#', FERRY_CONFIG_MAX_BYTES + 1);
  write_file("big.yaml", big, FERRY_CONFIG_MAX_BYTES + 1);
  assert_int_equal(ferry_config_load(&cfg, "big.yaml", &err), FERRY_ECONFIG);
  assert_string_equal(err.msg, "big.yaml: larger than 1048576 bytes");
  assert_int_equal(ferry_config_load_buffer(&cfg, "b.yaml", big, FERRY_CONFIG_MAX_BYTES + 1, &err),
                   FERRY_ECONFIG);
  assert_string_equal(err.msg, "b.yaml: larger than 1048576 bytes");
  /* exactly at the cap is fine (and empty: nothing but a comment) */
  write_file("big.yaml", big, FERRY_CONFIG_MAX_BYTES);
  assert_int_equal(ferry_config_load(&cfg, "big.yaml", &err), FERRY_ECONFIG);
  assert_string_equal(err.msg, "big.yaml: the file is empty");
  free(big);

  /* load_buffer's folder must exist */
  assert_int_equal(ferry_config_load_buffer(&cfg, "no/such/dir/f.yaml", "", 0, &err), FERRY_EIO);
  assert_string_equal(err.msg,
                      "no/such/dir/f.yaml: cannot resolve its folder no/such/dir: No such file "
                      "or directory");
  assert_null(cfg);
}

/* A pipe has no size to trust: --config <(generate) must still work. */
static void test_pipe(void **state) {
  static const char text[] = MIN CLOUD;
  ferry_config *cfg = NULL;
  ferry_error err;
  char path[64];
  int fds[2];
  (void)state;

  assert_int_equal(pipe(fds), 0);
  assert_int_equal(write(fds[1], text, sizeof text - 1), (ssize_t)(sizeof text - 1));
  close(fds[1]);
  snprintf(path, sizeof path, "/dev/fd/%d", fds[0]);
  assert_int_equal(ferry_config_load(&cfg, path, &err), FERRY_OK);
  assert_string_equal(cfg->cloud.base_url, "http://x");
  ferry_config_free(cfg);
  close(fds[0]);
}

/* ---- paths ---------------------------------------------------------------- */

static void test_relative_paths(void **state) {
  ferry_config *cfg = NULL;
  ferry_error err;
  char want[PATH_MAX * 2];
  (void)state;

  assert_int_equal(mkdir("etc", 0700), 0);
  assert_int_equal(symlink("etc", "link"), 0);
  write_file("etc/ferry.yaml",
             "mapping: ../maps//./m.yaml\n"
             "data: ./state/\n"
             "cloud: {base_url: http://x}\n",
             strlen("mapping: ../maps//./m.yaml\ndata: ./state/\ncloud: {base_url: http://x}\n"));
  /* loaded through a relative name and a symlinked folder: anchored to the
   * real folder all the same */
  assert_int_equal(ferry_config_load(&cfg, "link/ferry.yaml", &err), FERRY_OK);
  snprintf(want, sizeof want, "%s/etc/ferry.yaml", tmpdir);
  assert_string_equal(cfg->path, want);
  snprintf(want, sizeof want, "%s/maps/m.yaml", tmpdir);
  assert_string_equal(cfg->mapping, want);
  snprintf(want, sizeof want, "%s/etc/state", tmpdir);
  assert_string_equal(cfg->data, want);
  ferry_config_free(cfg);

  /* absolute paths stay as written */
  assert_int_equal(load_text(&cfg, "mapping: /srv/m.yaml\ndata: /var/lib/ferry\n" CLOUD, &err),
                   FERRY_OK);
  assert_string_equal(cfg->mapping, "/srv/m.yaml");
  assert_string_equal(cfg->data, "/var/lib/ferry");
  ferry_config_free(cfg);
}

static void expect_resolve(const char *dir, const char *path, const char *want) {
  char *got = ferry_config_path_resolve(dir, path);
  assert_non_null(got);
  assert_string_equal(got, want);
  free(got);
}

static void test_path_resolve(void **state) {
  (void)state;
  expect_resolve("/a/b", "m.yaml", "/a/b/m.yaml");
  expect_resolve("/a/b", "./m.yaml", "/a/b/m.yaml");
  expect_resolve("/a/b", "../../../m.yaml", "/m.yaml");
  expect_resolve("/a/b", "..", "/a");
  expect_resolve("/a/b", ".", "/a/b");
  expect_resolve("/a/b", "x/../y", "/a/b/x/../y"); /* x may be a symlink */
  expect_resolve("/", "m.yaml", "/m.yaml");
  expect_resolve("/", "..", "/");
  expect_resolve("/a", "/abs//p", "/abs//p");
}

/* ---- customers and secrets ------------------------------------------------ */

static void test_customers(void **state) {
  ferry_config *cfg = NULL;
  ferry_error err;
  char *url;
  (void)state;

  assert_int_equal(load_text(&cfg,
                             MIN "cloud:\n"
                                 "  base_url: https://{customer}.cloud.example/v1/{customer}\n"
                                 "  token_env: GLOBAL_TOKEN\n"
                                 "customers:\n"
                                 "  acme:\n"
                                 "    base_url: https://other.example/{customer}\n"
                                 "    token_env: ACME_TOKEN\n"
                                 "  plain: {ingest_token_env: PLAIN_INGEST}\n"
                                 "  fixed: {base_url: 'http://fixed.example/'}\n",
                             &err),
                   FERRY_OK);
  assert_int_equal(cfg->ncustomers, 3);
  assert_string_equal(cfg->customers[0].id, "acme"); /* file order */
  assert_string_equal(cfg->customers[2].id, "fixed");

  url = ferry_config_base_url(cfg, "acme");
  assert_string_equal(url, "https://other.example/acme");
  free(url);
  url = ferry_config_base_url(cfg, "plain");
  assert_string_equal(url, "https://plain.cloud.example/v1/plain");
  free(url);
  url = ferry_config_base_url(cfg, "fixed");
  assert_string_equal(url, "http://fixed.example/");
  free(url);
  /* not listed: the global URL */
  url = ferry_config_base_url(cfg, "new-one_2.x");
  assert_string_equal(url, "https://new-one_2.x.cloud.example/v1/new-one_2.x");
  free(url);
  /* not an id: nothing that could reshape the URL */
  assert_null(ferry_config_base_url(cfg, "../admin"));
  assert_null(ferry_config_base_url(cfg, ""));
  assert_null(ferry_config_base_url(cfg, NULL));

  assert_string_equal(ferry_config_token_env(cfg, "acme"), "ACME_TOKEN");
  assert_string_equal(ferry_config_token_env(cfg, "plain"), "GLOBAL_TOKEN");
  assert_string_equal(ferry_config_token_env(cfg, "unknown"), "GLOBAL_TOKEN");
  assert_string_equal(ferry_config_customer(cfg, "plain")->ingest_token_env, "PLAIN_INGEST");
  assert_null(ferry_config_customer(cfg, "acm"));
  assert_null(ferry_config_customer(cfg, NULL));
  ferry_config_free(cfg);
}

static void test_secret(void **state) {
  (void)state;
  assert_int_equal(setenv("FERRY_TEST_SECRET", "s3cret", 1), 0);
  assert_string_equal(ferry_config_secret("FERRY_TEST_SECRET"), "s3cret");
  assert_int_equal(setenv("FERRY_TEST_SECRET", "", 1), 0);
  assert_null(ferry_config_secret("FERRY_TEST_SECRET"));
  assert_int_equal(unsetenv("FERRY_TEST_SECRET"), 0);
  assert_null(ferry_config_secret("FERRY_TEST_SECRET"));
  assert_null(ferry_config_secret(NULL));
  assert_null(ferry_config_secret(""));
}

/* ---- freeing -------------------------------------------------------------- */

static void test_free_half_built(void **state) {
  ferry_config *cfg;
  ferry_error err;
  (void)state;

  ferry_config_free(NULL);

  /* built by hand, as other modules' tests do: no key record */
  cfg = calloc(1, sizeof *cfg);
  assert_non_null(cfg);
  cfg->cloud.base_url = strdup("http://x/{customer}");
  cfg->customers = calloc(2, sizeof *cfg->customers);
  assert_non_null(cfg->customers);
  cfg->ncustomers = 2;
  cfg->customers[0].id = strdup("a");
  assert_int_equal(ferry_config_line(cfg, "cloud.base_url"), 0);
  assert_ptr_equal(ferry_config_customer(cfg, "a"), &cfg->customers[0]); /* no index */
  assert_null(ferry_config_customer(cfg, "b"));
  assert_null(ferry_config_token_env(cfg, "a"));
  ferry_config_free(cfg);

  /* failures late in the walk, with defaults, paths, customers and the key
   * record already allocated; ASan's leak check sees what is not freed */
  cfg = NULL;
  assert_int_equal(load_text(&cfg, full_yaml, &err), FERRY_OK);
  ferry_config_free(cfg);
  assert_int_equal(load_text(&cfg,
                             "data: d\n" MIN CLOUD "service: {listen: 'h:1'}\n"
                             "customers:\n"
                             "  a: {base_url: http://a, token_env: A}\n"
                             "  b: {feed_url: http://b, oops: 1}\n",
                             &err),
                   FERRY_ECONFIG);
  assert_string_equal(err.msg, "ferry.yaml:8: customers.b.oops: unknown key");
  assert_null(cfg);
  assert_int_equal(load_text(&cfg, "data: d\n" MIN CLOUD "customers: {a: {}}\n", &err), FERRY_OK);
  ferry_config_free(cfg);
  assert_int_equal(load_text(&cfg, "data: d\nmapping: m\ncustomers: {a: {}}\n", &err),
                   FERRY_ECONFIG);
  assert_string_equal(err.msg, "ferry.yaml: missing required key cloud");
}

/* Fails the n-th allocation, for every n until a load gets through: each must
 * end in FERRY_ENOMEM with nothing leaked, or succeed. */
static void test_out_of_memory(void **state) {
#ifdef HAVE_ASAN
  (void)state;
  skip();
#else
  long n;
  int ooms = 0, yaml_ooms = 0;
  (void)state;

  write_file("ferry.yaml", full_yaml, strlen(full_yaml));
  called_from_libyaml(); /* backtrace() allocates once, on first use */
  for (n = 0;; n++) {
    ferry_config *cfg = NULL;
    ferry_error err;
    ferry_status st;
    live = 0;
    failed_in_libyaml = 0;
    counting = 1;
    fail_in = n;
    st = ferry_config_load(&cfg, "ferry.yaml", &err);
    ferry_config_free(cfg);
    counting = 0;
    if (fail_in >= 0) { /* nothing failed: every allocation was survived */
      fail_in = -1;
      assert_int_equal(st, FERRY_OK);
      assert_int_equal(live, 0);
      break;
    }
    if (st != FERRY_ENOMEM) fail_msg("allocation %ld: [%d] %s", n, st, err.msg);
    assert_int_equal(err.code, FERRY_ENOMEM);
    if (live != 0 && !failed_in_libyaml)
      fail_msg("allocation %ld failed: %ld allocations leaked", n, live);
    ooms++;
    yaml_ooms += failed_in_libyaml;
  }
  /* both ours and libyaml's allocations were failed */
  assert_true(ooms > yaml_ooms && yaml_ooms > 0);
#endif
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_minimal_defaults),
      cmocka_unit_test(test_full),
      cmocka_unit_test(test_yaml_forms),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_yaml_errors),
      cmocka_unit_test(test_nesting),
      cmocka_unit_test(test_anchors),
      cmocka_unit_test(test_io_errors),
      cmocka_unit_test(test_pipe),
      cmocka_unit_test(test_relative_paths),
      cmocka_unit_test(test_path_resolve),
      cmocka_unit_test(test_customers),
      cmocka_unit_test(test_secret),
      cmocka_unit_test(test_free_half_built),
      cmocka_unit_test(test_out_of_memory),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
