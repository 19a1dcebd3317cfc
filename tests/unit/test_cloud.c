/*
 * Tests for the cloud client (src/cloud/) against a real ferry-cloudsim
 * process on loopback (from $FERRY_BUILD_DIR, port 0): create, patch, delete
 * and find with integer and string ids; retries on 5xx and on 429 with
 * Retry-After honoured; other 4xx failing at once; 404 meaning gone; one
 * record per create against a cloud that ignores Idempotency-Key and drops
 * connections after committing; the rate limit; connection reuse; the bearer
 * token; timeouts; and winding down with calls queued.
 *
 * The tests read the server's truth through its admin routes (/_dump,
 * /_stats) with a plain blocking libcurl request, outside the event loop.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>

#include "ferry/cloud.h"

/* ---- a cloudsim process ---------------------------------------------------- */

typedef struct sim {
  pid_t pid;
  char base[64]; /* http://127.0.0.1:PORT */
} sim;

/* Starts ferry-cloudsim with the extra arguments (NULL-terminated). */
static void sim_start(sim *s, ...) {
  const char *argv[40];
  char path[512];
  int n = 0, fds[2];
  va_list ap;
  const char *dir = getenv("FERRY_BUILD_DIR");
  snprintf(path, sizeof path, "%s/ferry-cloudsim", dir ? dir : ".");
  argv[n++] = path;
  argv[n++] = "--listen";
  argv[n++] = "127.0.0.1:0";
  va_start(ap, s);
  for (const char *a; n < 38 && (a = va_arg(ap, const char *)) != NULL;)
    argv[n++] = a;
  va_end(ap);
  argv[n] = NULL;
  assert_int_equal(pipe(fds), 0);
  s->pid = fork();
  assert_true(s->pid >= 0);
  if (s->pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    execv(path, (char **)argv);
    _exit(127);
  }
  close(fds[1]);
  FILE *f = fdopen(fds[0], "r");
  char line[256] = "";
  unsigned port = 0;
  assert_non_null(fgets(line, sizeof line, f));
  assert_int_equal(sscanf(line, "listening on 127.0.0.1:%u", &port), 1);
  fclose(f);
  snprintf(s->base, sizeof s->base, "http://127.0.0.1:%u", port);
}

static void sim_stop(sim *s) {
  kill(s->pid, SIGKILL);
  waitpid(s->pid, NULL, 0);
}

static size_t collect(char *p, size_t size, size_t n, void *arg) {
  json_t *buf = arg; /* a JSON string used as a growing buffer */
  size_t len = json_string_length(buf);
  char *joined = malloc(len + size * n + 1);
  memcpy(joined, json_string_value(buf), len);
  memcpy(joined + len, p, size * n);
  json_string_setn_nocheck(buf, joined, len + size * n);
  free(joined);
  return size * n;
}

/* GET base+path as JSON (an admin route), blocking: test code, not the loop. */
static json_t *sim_get(const sim *s, const char *path) {
  char url[256];
  json_t *buf = json_string("");
  CURL *e = curl_easy_init();
  snprintf(url, sizeof url, "%s%s", s->base, path);
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, buf);
  assert_int_equal(curl_easy_perform(e), CURLE_OK);
  curl_easy_cleanup(e);
  json_t *v = json_loads(json_string_value(buf), 0, NULL);
  json_decref(buf);
  assert_non_null(v);
  return v;
}

/* The records of one collection in /_dump. */
static json_t *sim_records(const sim *s, const char *coll) {
  json_t *d = sim_get(s, "/_dump");
  json_t *r = json_incref(json_object_get(d, coll));
  json_decref(d);
  return r ? r : json_array();
}

/* ---- running calls on a loop ------------------------------------------------- */

typedef struct outcome {
  ferry_outcome outcome;
  int status;
  unsigned attempts, retries;
  bool exhausted, unauthorized, cancelled;
  char *id, *error, *method, *path;
  size_t found;
  int64_t latency_us;
  double done_at; /* seconds since the run started */
} outcome;

typedef struct runner {
  struct event_base *base;
  ferry_cloud *c;
  unsigned left;
  double t0;
  int wind_down_after; /* >0: wind down when this many calls have ended */
  unsigned ended;
} runner;

typedef struct slot {
  runner *r;
  outcome o;
} slot;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_done(void *arg, const ferry_cloud_result *res) {
  slot *s = arg;
  outcome *o = &s->o;
  o->outcome = res->outcome;
  o->status = res->http_status;
  o->attempts = res->attempts;
  o->retries = res->retries;
  o->exhausted = res->exhausted;
  o->unauthorized = res->unauthorized;
  o->cancelled = res->cancelled;
  o->id = res->id ? strdup(res->id) : NULL;
  o->error = res->error ? strdup(res->error) : NULL;
  o->method = strdup(res->method);
  o->path = strdup(res->path);
  o->found = res->found ? json_array_size(res->found) : 0;
  o->latency_us = res->latency_us;
  o->done_at = now_s() - s->r->t0;
  s->r->ended++;
  if (s->r->wind_down_after && s->r->ended == (unsigned)s->r->wind_down_after)
    ferry_cloud_wind_down(s->r->c);
  if (--s->r->left == 0) event_base_loopbreak(s->r->base);
}

static void outcome_free(outcome *o) {
  free(o->id);
  free(o->error);
  free(o->method);
  free(o->path);
  memset(o, 0, sizeof *o);
}

typedef struct fixture {
  sim s;
  struct event_base *base;
  ferry_cloud *c;
} fixture;

static void client_open(fixture *f, ferry_cloud_opts *o) {
  ferry_error err;
  o->base_url = f->s.base;
  assert_int_equal(ferry_cloud_create(&f->c, f->base, o, &err), FERRY_OK);
}

static ferry_cloud_opts fast_opts(void) {
  ferry_cloud_opts o;
  ferry_cloud_opts_init(&o);
  o.backoff_base_ms = 5; /* tests need retries, not patience */
  o.backoff_cap_ms = 50;
  o.max_attempts = 30;
  o.timeout_ms = 5000;
  o.seed = 42;
  return o;
}

/* Runs n requests to completion; slots gets the outcomes. */
static void run(fixture *f, const ferry_cloud_request *reqs, size_t n, slot *slots,
                int wind_down_after) {
  runner r = {f->base, f->c, (unsigned)n, now_s(), wind_down_after, 0};
  ferry_error err;
  for (size_t i = 0; i < n; i++) {
    slots[i].r = &r;
    assert_int_equal(ferry_cloud_submit(f->c, &reqs[i], on_done, &slots[i], &err), FERRY_OK);
  }
  if (n) event_base_dispatch(f->base);
  assert_int_equal(r.left, 0);
  assert_int_equal(ferry_cloud_pending(f->c), 0);
}

/* One request; returns its outcome (caller frees with outcome_free). */
static outcome run1(fixture *f, ferry_cloud_request req) {
  slot s;
  memset(&s, 0, sizeof s);
  run(f, &req, 1, &s, 0);
  return s.o;
}

static ferry_cloud_request create_req(json_t *body, const char *ext, const char *idem) {
  ferry_cloud_request r = {FERRY_CLOUD_CREATE, "/acme/contacts", NULL, body, ext, idem, false};
  return r;
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  f->base = event_base_new();
  *state = f;
  return f->base ? 0 : -1;
}

static int teardown(void **state) {
  fixture *f = *state;
  ferry_cloud_destroy(f->c);
  if (f->s.pid > 0) sim_stop(&f->s);
  event_base_free(f->base);
  free(f);
  return 0;
}

#define NO_FAULTS                                                                                  \
  "--fail-rate", "0", "--throttle-rate", "0", "--drop-rate", "0", "--commit-then-drop-rate", "0"

/* ---- tests ---------------------------------------------------------------------- */

static void test_idempotency_key(void **state) {
  (void)state;
  char a[33], b[33], c[33], d[33];
  ferry_cloud_idempotency_key(a, "acme", "contact", "1", 1);
  ferry_cloud_idempotency_key(b, "acme", "contact", "1", 1);
  ferry_cloud_idempotency_key(c, "acme", "contact", "1", 2);
  ferry_cloud_idempotency_key(d, "acme", "contact1", "", 1); /* the \0s keep fields apart */
  assert_int_equal(strlen(a), 32);
  assert_string_equal(a, b);
  assert_string_not_equal(a, c);
  assert_string_not_equal(a, d);
}

static void test_create_patch_delete_find(void **state) {
  fixture *f = *state;
  sim_start(&f->s, NO_FAULTS, NULL);
  ferry_cloud_opts o = fast_opts();
  client_open(f, &o);
  json_t *body = json_pack("{s:s, s:s}", "name", "Ann", "legacy_key", "contact/a b&c");
  outcome cr = run1(f, create_req(body, "contact/a b&c", "k1"));
  assert_int_equal(cr.outcome, FERRY_OUTCOME_OK);
  assert_int_equal(cr.status, 201);
  assert_string_equal(cr.id, "1"); /* an integer id stays a number */
  assert_string_equal(cr.method, "POST");
  assert_string_equal(cr.path, "/acme/contacts");

  ferry_cloud_request find = {
      FERRY_CLOUD_FIND, "/acme/contacts", NULL, NULL, "contact/a b&c", NULL, false};
  outcome fd = run1(f, find);
  assert_int_equal(fd.outcome, FERRY_OUTCOME_OK);
  assert_int_equal(fd.found, 1);
  assert_non_null(strstr(fd.path, "legacy_key=contact%2Fa%20b%26c"));

  json_t *patch = json_pack("{s:s}", "name", "Bo");
  ferry_cloud_request pr = {FERRY_CLOUD_PATCH, "/acme/contacts", cr.id, patch, NULL, NULL, false};
  outcome pt = run1(f, pr);
  assert_int_equal(pt.outcome, FERRY_OUTCOME_OK);
  assert_string_equal(pt.path, "/acme/contacts/1");
  json_t *recs = sim_records(&f->s, "/acme/contacts");
  assert_string_equal(json_string_value(json_object_get(json_array_get(recs, 0), "name")), "Bo");
  json_decref(recs);

  ferry_cloud_request del = {FERRY_CLOUD_DELETE, "/acme/contacts", cr.id, NULL, NULL, NULL, false};
  outcome d1 = run1(f, del), d2 = run1(f, del), p2 = run1(f, pr);
  assert_int_equal(d1.outcome, FERRY_OUTCOME_OK);
  assert_int_equal(d2.outcome, FERRY_OUTCOME_GONE); /* 404 on delete: already deleted */
  assert_int_equal(p2.outcome, FERRY_OUTCOME_GONE); /* 404 on patch: the record vanished */
  assert_null(p2.error);
  outcome f2 = run1(f, find);
  assert_int_equal(f2.found, 0);
  outcome *all[] = {&cr, &fd, &pt, &d1, &d2, &p2, &f2};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    outcome_free(all[i]);
  json_decref(body);
  json_decref(patch);
}

static void test_string_ids(void **state) {
  fixture *f = *state;
  sim_start(&f->s, NO_FAULTS, "--ids", "uuid", NULL);
  ferry_cloud_opts o = fast_opts();
  client_open(f, &o);
  json_t *body = json_pack("{s:s}", "legacy_key", "contact/1");
  outcome cr = run1(f, create_req(body, "contact/1", "k1"));
  assert_int_equal(cr.outcome, FERRY_OUTCOME_OK);
  assert_true(cr.id[0] == '"'); /* a string id stays a string */
  ferry_cloud_request del = {FERRY_CLOUD_DELETE, "/acme/contacts", cr.id, NULL, NULL, NULL, false};
  outcome d = run1(f, del);
  assert_int_equal(d.outcome, FERRY_OUTCOME_OK);
  json_t *recs = sim_records(&f->s, "/acme/contacts");
  assert_int_equal(json_array_size(recs), 0);
  json_decref(recs);
  outcome_free(&cr);
  outcome_free(&d);
  json_decref(body);
}

/* n creates of distinct entities; returns how many ended with each outcome. */
static void create_many(fixture *f, size_t n, unsigned counts[5], unsigned *retries) {
  ferry_cloud_request *reqs = calloc(n, sizeof *reqs);
  slot *slots = calloc(n, sizeof *slots);
  json_t **bodies = calloc(n, sizeof *bodies);
  char(*keys)[32] = calloc(n, sizeof *keys), (*idem)[33] = calloc(n, sizeof *idem);
  for (size_t i = 0; i < n; i++) {
    snprintf(keys[i], sizeof keys[i], "contact/%zu", i);
    ferry_cloud_idempotency_key(idem[i], "acme", "contact", keys[i], 1);
    bodies[i] = json_pack("{s:s, s:i}", "legacy_key", keys[i], "n", (int)i);
    reqs[i] = create_req(bodies[i], keys[i], idem[i]);
  }
  run(f, reqs, n, slots, 0);
  memset(counts, 0, 5 * sizeof *counts);
  *retries = 0;
  for (size_t i = 0; i < n; i++) {
    counts[slots[i].o.outcome]++;
    *retries += slots[i].o.retries;
    if (slots[i].o.outcome != FERRY_OUTCOME_OK && slots[i].o.outcome != FERRY_OUTCOME_ADOPTED)
      print_message("call %zu: %s\n", i, slots[i].o.error ? slots[i].o.error : "?");
    outcome_free(&slots[i].o);
    json_decref(bodies[i]);
  }
  free(reqs), free(slots), free(bodies), free(keys), free(idem);
}

/* Every record's legacy_key distinct, n of them. */
static void assert_one_record_each(const sim *s, size_t n) {
  json_t *recs = sim_records(s, "/acme/contacts");
  json_t *seen = json_object();
  size_t i;
  json_t *r;
  json_array_foreach(recs, i, r) {
    const char *k = json_string_value(json_object_get(r, "legacy_key"));
    assert_non_null(k);
    if (json_object_get(seen, k)) fail_msg("duplicate record for %s", k);
    json_object_set_new(seen, k, json_true());
  }
  assert_int_equal(json_array_size(recs), n);
  json_decref(seen);
  json_decref(recs);
}

static void test_retry_on_5xx(void **state) {
  fixture *f = *state;
  sim_start(&f->s, "--fail-rate", "0.5", "--throttle-rate", "0", "--drop-rate", "0",
            "--commit-then-drop-rate", "0", "--seed", "7", NULL);
  ferry_cloud_opts o = fast_opts();
  client_open(f, &o);
  unsigned counts[5], retries;
  create_many(f, 40, counts, &retries);
  assert_int_equal(counts[FERRY_OUTCOME_OK] + counts[FERRY_OUTCOME_ADOPTED], 40);
  assert_true(retries > 10);
  assert_one_record_each(&f->s, 40);
  ferry_cloud_stats st;
  ferry_cloud_stats_get(f->c, &st);
  assert_true(st.by_status[500] + st.by_status[503] > 10);
}

/* The cloud ignores Idempotency-Key and often commits, then drops the
 * connection: lookups by external key keep it to one record per entity. */
static void test_no_duplicates_without_idempotency(void **state) {
  fixture *f = *state;
  static const char *seeds[] = {"1", "2", "3", "4", "5"};
  for (size_t i = 0; i < sizeof seeds / sizeof *seeds; i++) {
    sim_start(&f->s, "--no-idempotency", "--commit-then-drop-rate", "0.3", "--fail-rate", "0.1",
              "--drop-rate", "0.1", "--throttle-rate", "0", "--seed", seeds[i], NULL);
    ferry_cloud_opts o = fast_opts();
    client_open(f, &o);
    unsigned counts[5], retries;
    create_many(f, 100, counts, &retries);
    assert_int_equal(counts[FERRY_OUTCOME_OK] + counts[FERRY_OUTCOME_ADOPTED], 100);
    assert_true(counts[FERRY_OUTCOME_ADOPTED] > 0);
    assert_one_record_each(&f->s, 100);
    ferry_cloud_stats st;
    ferry_cloud_stats_get(f->c, &st);
    assert_true(st.finds > 0);
    ferry_cloud_destroy(f->c);
    f->c = NULL;
    sim_stop(&f->s);
    f->s.pid = 0;
  }
}

/* A create that an earlier run may have sent looks it up first. */
static void test_resume_adopts(void **state) {
  fixture *f = *state;
  sim_start(&f->s, NO_FAULTS, "--no-idempotency", NULL);
  ferry_cloud_opts o = fast_opts();
  client_open(f, &o);
  json_t *body = json_pack("{s:s}", "legacy_key", "contact/9");
  ferry_cloud_request r = create_req(body, "contact/9", "k9");
  outcome a = run1(f, r);
  r.resume = true;
  outcome b = run1(f, r);
  assert_int_equal(a.outcome, FERRY_OUTCOME_OK);
  assert_int_equal(b.outcome, FERRY_OUTCOME_ADOPTED);
  assert_string_equal(a.id, b.id);
  assert_string_equal(b.method, "GET");
  assert_null(b.error); /* one match: nothing to report */
  assert_one_record_each(&f->s, 1);
  outcome_free(&a);
  outcome_free(&b);
  json_decref(body);
}

/* The rows changed between the attempt that created the record and the one
 * that finds it: the adopted record is patched to the newer payload. */
static void test_adopt_patches_stale_record(void **state) {
  fixture *f = *state;
  sim_start(&f->s, NO_FAULTS, "--no-idempotency", NULL);
  ferry_cloud_opts o = fast_opts();
  client_open(f, &o);
  json_t *old = json_pack("{s:s, s:s, s:i}", "legacy_key", "contact/3", "email", "old@x", "n", 1);
  json_t *cur = json_pack("{s:s, s:s, s:i}", "legacy_key", "contact/3", "email", "new@x", "n", 1);
  outcome a = run1(f, create_req(old, "contact/3", "g1"));
  ferry_cloud_request r = create_req(cur, "contact/3", "g1");
  r.resume = true;
  outcome b = run1(f, r);
  assert_int_equal(b.outcome, FERRY_OUTCOME_ADOPTED);
  assert_string_equal(b.id, a.id);
  assert_string_equal(b.method, "PATCH");
  assert_int_equal(b.attempts, 2); /* the lookup, then the patch */
  json_t *recs = sim_records(&f->s, "/acme/contacts");
  assert_int_equal(json_array_size(recs), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(recs, 0), "email")),
                      "new@x");
  json_decref(recs);
  outcome_free(&a), outcome_free(&b);
  json_decref(old), json_decref(cur);
}

/* Two records with one external key (a cloud that lost both our key and our
 * lookup): the lowest id is adopted and the other named. */
static void test_two_matches_adopt_lowest(void **state) {
  fixture *f = *state;
  sim_start(&f->s, NO_FAULTS, "--no-idempotency", NULL);
  ferry_cloud_opts o = fast_opts();
  client_open(f, &o);
  json_t *body = json_pack("{s:s}", "legacy_key", "contact/5");
  outcome a = run1(f, create_req(body, "contact/5", "x1"));
  outcome b = run1(f, create_req(body, "contact/5", "x2"));
  ferry_cloud_request r = create_req(body, "contact/5", "x3");
  r.resume = true;
  outcome c = run1(f, r);
  assert_int_equal(c.outcome, FERRY_OUTCOME_ADOPTED);
  assert_string_equal(c.id, "1");
  assert_non_null(c.error);
  assert_non_null(strstr(c.error, "2 cloud records"));
  assert_non_null(strstr(c.error, "not 2"));
  outcome_free(&a), outcome_free(&b), outcome_free(&c);
  json_decref(body);
}

static void test_429_honours_retry_after(void **state) {
  fixture *f = *state;
  sim_start(&f->s, "--throttle-rate", "1", "--retry-after", "1", "--fail-rate", "0", "--drop-rate",
            "0", "--commit-then-drop-rate", "0", NULL);
  ferry_cloud_opts o = fast_opts();
  o.max_attempts = 3;
  client_open(f, &o);
  json_t *body = json_pack("{s:s}", "legacy_key", "contact/1");
  outcome r = run1(f, create_req(body, "contact/1", "k"));
  assert_int_equal(r.outcome, FERRY_OUTCOME_UNKNOWN);
  assert_true(r.exhausted);
  assert_int_equal(r.status, 429);
  assert_int_equal(r.attempts, 3);
  /* two waits of at least Retry-After (1 s) each; backoff alone is <= 50 ms */
  assert_true(r.latency_us >= 2000000);
  assert_non_null(strstr(r.error, "429"));
  outcome_free(&r);
  json_decref(body);
}

static void test_4xx_fails_without_retry(void **state) {
  fixture *f = *state;
  sim_start(&f->s, NO_FAULTS, "--max-body", "200", NULL);
  ferry_cloud_opts o = fast_opts();
  client_open(f, &o);
  char big[400];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  json_t *huge = json_pack("{s:s, s:s}", "legacy_key", "contact/1", "note", big);
  outcome a = run1(f, create_req(huge, "contact/1", "k1"));
  assert_int_equal(a.outcome, FERRY_OUTCOME_FAILED);
  assert_int_equal(a.status, 413);
  assert_int_equal(a.attempts, 1);
  assert_non_null(strstr(a.error, "413"));
  /* the same Idempotency-Key for a different body: 422 */
  json_t *b1 = json_pack("{s:s}", "legacy_key", "contact/2");
  json_t *b2 = json_pack("{s:s, s:i}", "legacy_key", "contact/2", "v", 2);
  outcome b = run1(f, create_req(b1, "contact/2", "same"));
  outcome c = run1(f, create_req(b2, "contact/2", "same"));
  assert_int_equal(b.outcome, FERRY_OUTCOME_OK);
  assert_int_equal(c.outcome, FERRY_OUTCOME_FAILED);
  assert_int_equal(c.status, 422);
  assert_int_equal(c.attempts, 1);
  assert_non_null(strstr(c.error, "Idempotency-Key"));
  outcome_free(&a), outcome_free(&b), outcome_free(&c);
  json_decref(huge), json_decref(b1), json_decref(b2);
}

static void test_rate_limit(void **state) {
  fixture *f = *state;
  sim_start(&f->s, NO_FAULTS, NULL);
  ferry_cloud_opts o = fast_opts();
  o.rate_limit = 20;
  o.concurrency = 8;
  client_open(f, &o);
  enum { N = 50 };
  ferry_cloud_request reqs[N];
  slot slots[N];
  memset(slots, 0, sizeof slots);
  for (int i = 0; i < N; i++)
    reqs[i] = (ferry_cloud_request){
        FERRY_CLOUD_FIND, "/acme/contacts", NULL, NULL, "contact/1", NULL, false};
  double t0 = now_s();
  run(f, reqs, N, slots, 0);
  double elapsed = now_s() - t0;
  /* 50 requests 50 ms apart: at least 2.45 s */
  assert_true(elapsed >= 2.4);
  /* no sliding one-second window holds more than 20 (+1 for the edges) */
  for (int i = 0; i < N; i++) {
    int in = 0;
    for (int j = 0; j < N; j++)
      if (slots[j].o.done_at >= slots[i].o.done_at && slots[j].o.done_at < slots[i].o.done_at + 1)
        in++;
    if (in > 21) fail_msg("%d requests within a second of request %d", in, i);
  }
  for (int i = 0; i < N; i++)
    outcome_free(&slots[i].o);
}

static void test_connection_reuse(void **state) {
  fixture *f = *state;
  sim_start(&f->s, NO_FAULTS, NULL);
  ferry_cloud_opts o = fast_opts();
  o.concurrency = 4;
  client_open(f, &o);
  unsigned counts[5], retries;
  create_many(f, 400, counts, &retries);
  assert_int_equal(counts[FERRY_OUTCOME_OK], 400);
  ferry_cloud_stats st;
  ferry_cloud_stats_get(f->c, &st);
  assert_int_equal(st.requests, 400);
  assert_true(st.connects <= 4);
  json_t *stats = sim_get(&f->s, "/_stats");
  json_int_t accepted = json_integer_value(json_object_get(stats, "connections_accepted"));
  json_int_t most = json_integer_value(json_object_get(
      json_object_get(json_object_get(stats, "accounts"), "/acme"), "max_in_flight"));
  assert_true(accepted <= 4 + 2); /* our 4, and the test's own admin requests */
  assert_true(most <= 4);
  json_decref(stats);
}

static void test_token(void **state) {
  fixture *f = *state;
  setenv("TEST_CLOUD_TOKEN", "s3cret-token", 1);
  sim_start(&f->s, NO_FAULTS, "--token-env", "TEST_CLOUD_TOKEN", NULL);
  ferry_cloud_opts o = fast_opts();
  client_open(f, &o);
  json_t *body = json_pack("{s:s}", "legacy_key", "contact/1");
  outcome a = run1(f, create_req(body, "contact/1", "k1"));
  assert_int_equal(a.outcome, FERRY_OUTCOME_UNKNOWN);
  assert_true(a.unauthorized);
  assert_int_equal(a.attempts, 1);
  assert_null(strstr(a.error, "s3cret"));
  ferry_cloud_destroy(f->c);
  f->c = NULL;
  o.token = "s3cret-token";
  client_open(f, &o);
  outcome b = run1(f, create_req(body, "contact/1", "k1"));
  assert_int_equal(b.outcome, FERRY_OUTCOME_OK);
  outcome_free(&a), outcome_free(&b);
  json_decref(body);
}

static void test_timeout_exhausts(void **state) {
  fixture *f = *state;
  sim_start(&f->s, NO_FAULTS, "--latency-ms", "400", NULL);
  ferry_cloud_opts o = fast_opts();
  o.timeout_ms = 100;
  o.max_attempts = 3;
  client_open(f, &o);
  json_t *body = json_pack("{s:s}", "legacy_key", "contact/1");
  outcome a = run1(f, create_req(body, "contact/1", "k1"));
  assert_int_equal(a.outcome, FERRY_OUTCOME_UNKNOWN);
  assert_true(a.exhausted);
  assert_int_equal(a.attempts, 3);
  assert_int_equal(a.status, 0);
  /* the first POST timed out, so later attempts looked the record up first */
  assert_string_equal(a.method, "GET");
  assert_non_null(strstr(a.error, "gave up after 3 attempts"));
  outcome_free(&a);
  json_decref(body);
}

static void test_wind_down(void **state) {
  fixture *f = *state;
  sim_start(&f->s, NO_FAULTS, "--latency-ms", "100", NULL);
  ferry_cloud_opts o = fast_opts();
  o.concurrency = 2;
  client_open(f, &o);
  enum { N = 10 };
  slot slots[N];
  json_t *body[N];
  char keys[N][16];
  ferry_error err;
  runner r = {f->base, f->c, N, now_s(), 0, 0};
  memset(slots, 0, sizeof slots);
  for (int i = 0; i < N; i++) {
    snprintf(keys[i], sizeof keys[i], "contact/%d", i);
    body[i] = json_pack("{s:s}", "legacy_key", keys[i]);
    ferry_cloud_request req = create_req(body[i], keys[i], keys[i]);
    slots[i].r = &r;
    assert_int_equal(ferry_cloud_submit(f->c, &req, on_done, &slots[i], &err), FERRY_OK);
  }
  ferry_cloud_wind_down(f->c); /* two are on the wire, eight queued */
  ferry_cloud_request late = create_req(body[0], "contact/x", "x");
  assert_int_equal(ferry_cloud_submit(f->c, &late, on_done, NULL, &err), FERRY_ECLOUD);
  event_base_dispatch(f->base);
  int ok = 0, cancelled = 0;
  for (int i = 0; i < N; i++) {
    if (slots[i].o.outcome == FERRY_OUTCOME_OK) ok++;
    if (slots[i].o.cancelled) cancelled++;
    outcome_free(&slots[i].o);
  }
  assert_int_equal(ok, 2); /* the two on the wire finished */
  assert_int_equal(cancelled, N - 2);
  assert_one_record_each(&f->s, 2);
  outcome again = run1(f, late); /* once idle, the client takes calls again */
  assert_int_equal(again.outcome, FERRY_OUTCOME_OK);
  outcome_free(&again);
  for (int i = 0; i < N; i++)
    json_decref(body[i]);
}

/* A DELETE without an id (its create never got an answer) deletes what a
 * lookup by external key finds. */
static void test_delete_by_key(void **state) {
  fixture *f = *state;
  sim_start(&f->s, NO_FAULTS, "--no-idempotency", NULL);
  ferry_cloud_opts o = fast_opts();
  client_open(f, &o);
  json_t *body = json_pack("{s:s}", "legacy_key", "contact/5");
  outcome a = run1(f, create_req(body, "contact/5", "x1"));
  outcome b = run1(f, create_req(body, "contact/5", "x2"));
  ferry_cloud_request del = {
      FERRY_CLOUD_DELETE, "/acme/contacts", NULL, NULL, "contact/5", NULL, false};
  outcome d = run1(f, del);
  assert_int_equal(d.outcome, FERRY_OUTCOME_OK);
  assert_int_equal(d.attempts, 3); /* one lookup, two deletes */
  assert_non_null(d.error);
  assert_non_null(strstr(d.error, "deleted them all"));
  assert_one_record_each(&f->s, 0);
  outcome e = run1(f, del);
  assert_int_equal(e.outcome, FERRY_OUTCOME_GONE);
  outcome_free(&a), outcome_free(&b), outcome_free(&d), outcome_free(&e);
  json_decref(body);
}

static void test_bad_requests(void **state) {
  fixture *f = *state;
  ferry_cloud_opts o = fast_opts();
  ferry_error err;
  o.base_url = "ftp://x";
  assert_int_equal(ferry_cloud_create(&f->c, f->base, &o, &err), FERRY_EINVAL);
  assert_null(f->c);
  o.base_url = "http://127.0.0.1:1/";
  assert_int_equal(ferry_cloud_create(&f->c, f->base, &o, &err), FERRY_OK);
  ferry_cloud_request r = {FERRY_CLOUD_PATCH, "contacts", "1", NULL, NULL, NULL, false};
  assert_int_equal(ferry_cloud_submit(f->c, &r, on_done, NULL, &err), FERRY_EINVAL);
  r.endpoint = "/contacts";
  r.id = "{}";
  assert_int_equal(ferry_cloud_submit(f->c, &r, on_done, NULL, &err), FERRY_EINVAL);
  assert_int_equal(ferry_cloud_pending(f->c), 0);
}

/* Nothing listens: connection refused is retried, then the call gives up. */
static void test_unreachable(void **state) {
  fixture *f = *state;
  ferry_cloud_opts o = fast_opts();
  o.base_url = "http://127.0.0.1:1";
  o.max_attempts = 3;
  ferry_error err;
  assert_int_equal(ferry_cloud_create(&f->c, f->base, &o, &err), FERRY_OK);
  json_t *body = json_pack("{s:s}", "legacy_key", "contact/1");
  outcome a = run1(f, create_req(body, "contact/1", "k1"));
  assert_int_equal(a.outcome, FERRY_OUTCOME_UNKNOWN);
  assert_true(a.exhausted);
  assert_int_equal(a.attempts, 3);
  assert_string_equal(a.method, "POST"); /* refused connections prove nothing was sent */
  outcome_free(&a);
  json_decref(body);
}

int main(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_idempotency_key),
      cmocka_unit_test_setup_teardown(test_create_patch_delete_find, setup, teardown),
      cmocka_unit_test_setup_teardown(test_string_ids, setup, teardown),
      cmocka_unit_test_setup_teardown(test_retry_on_5xx, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_duplicates_without_idempotency, setup, teardown),
      cmocka_unit_test_setup_teardown(test_resume_adopts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_adopt_patches_stale_record, setup, teardown),
      cmocka_unit_test_setup_teardown(test_two_matches_adopt_lowest, setup, teardown),
      cmocka_unit_test_setup_teardown(test_429_honours_retry_after, setup, teardown),
      cmocka_unit_test_setup_teardown(test_4xx_fails_without_retry, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_connection_reuse, setup, teardown),
      cmocka_unit_test_setup_teardown(test_token, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeout_exhausts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_wind_down, setup, teardown),
      cmocka_unit_test_setup_teardown(test_delete_by_key, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unreachable, setup, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
