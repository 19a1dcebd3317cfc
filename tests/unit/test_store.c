/*
 * Tests for the store (src/log/): appends and their seqs, dedup by change id,
 * customer isolation, the pid lock, readers beside a writer, group commit
 * under concurrent appends, chunked large batches, recovery after the writer
 * is killed mid-append, and the generic per-customer kv access.
 *
 * Each test gets a fresh data directory under /tmp, removed afterwards.
 * Changes are real packed ferry.v1.Change messages, so the stored events
 * are checked by decoding them with protobuf-c.
 */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
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

#include "ferry/store.h"
#include "ferry/v1/change.pb-c.h"
#include "ferry/v1/event.pb-c.h"

/* ---- fixtures --------------------------------------------------------------- */

typedef struct fixture {
  char dir[64];
} fixture;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  remove(path);
  return 0;
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (!f) return -1;
  strcpy(f->dir, "/tmp/ferry-test-store-XXXXXX");
  if (!mkdtemp(f->dir)) return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  free(f);
  return 0;
}

/* ---- batches of changes ------------------------------------------------------- */

typedef struct batch {
  size_t n;
  ferry_change_ref *refs;
  char **ids;
  uint8_t **pbs;
} batch;

/* Packs a Contacts upsert with id and a payload column of row_bytes bytes. */
static uint8_t *pack_change(const char *id, size_t row_bytes, size_t *len) {
  Ferry__V1__Change c = FERRY__V1__CHANGE__INIT;
  Ferry__V1__Column col = FERRY__V1__COLUMN__INIT;
  Ferry__V1__Value v = FERRY__V1__VALUE__INIT;
  Ferry__V1__Column *cols[1] = {&col};
  char *payload = malloc(row_bytes + 1);
  assert_non_null(payload);
  memset(payload, 'x', row_bytes);
  payload[row_bytes] = '\0';
  v.kind_case = FERRY__V1__VALUE__KIND_STRING_VALUE;
  v.string_value = payload;
  col.name = "payload";
  col.value = &v;
  c.table = "Contacts";
  c.key = (char *)id;
  c.op = FERRY__V1__OP__OP_UPSERT;
  c.version = 1;
  c.id = (char *)id;
  c.n_row = 1;
  c.row = cols;
  *len = ferry__v1__change__get_packed_size(&c);
  uint8_t *buf = malloc(*len);
  assert_non_null(buf);
  ferry__v1__change__pack(&c, buf);
  free(payload);
  return buf;
}

/* Changes with ids "<tag>-<start>" .. "<tag>-<start+n-1>". */
static batch *batch_make(const char *tag, size_t start, size_t n, size_t row_bytes) {
  batch *b = calloc(1, sizeof *b);
  assert_non_null(b);
  b->n = n;
  b->refs = calloc(n ? n : 1, sizeof *b->refs);
  b->ids = calloc(n ? n : 1, sizeof *b->ids);
  b->pbs = calloc(n ? n : 1, sizeof *b->pbs);
  assert_true(b->refs && b->ids && b->pbs);
  for (size_t i = 0; i < n; i++) {
    char id[128];
    snprintf(id, sizeof id, "%s-%zu", tag, start + i);
    b->ids[i] = strdup(id);
    b->pbs[i] = pack_change(id, row_bytes, &b->refs[i].pb_len);
    b->refs[i].id = b->ids[i];
    b->refs[i].id_len = strlen(id);
    b->refs[i].pb = b->pbs[i];
  }
  return b;
}

static void batch_free(batch *b) {
  if (!b) return;
  for (size_t i = 0; i < b->n; i++) {
    free(b->ids[i]);
    free(b->pbs[i]);
  }
  free(b->refs);
  free(b->ids);
  free(b->pbs);
  free(b);
}

static ferry_store *open_store(const char *dir, ferry_store_mode mode) {
  ferry_store *s = NULL;
  ferry_error err;
  ferry_error_clear(&err);
  ferry_status st = ferry_store_open(&s, dir, mode, &err);
  if (st) fail_msg("open %s: %s", dir, err.msg);
  return s;
}

static ferry_append_result append_ok(ferry_store *s, const char *customer, const batch *b) {
  ferry_append_result res;
  ferry_error err;
  ferry_error_clear(&err);
  ferry_status st = ferry_store_append(s, customer, b->refs, b->n, &res, &err);
  if (st) fail_msg("append to %s: %s", customer, err.msg);
  return res;
}

/*
 * Reads a customer's whole log, checking that seqs run 1..head without a gap
 * and each event decodes; returns the ids in seq order (caller frees).
 */
static char **read_log(ferry_store *s, const char *customer, uint64_t *count) {
  ferry_log_iter *it = NULL;
  ferry_error err;
  uint64_t head = 0, seq, n = 0;
  const uint8_t *ev;
  size_t len;
  int r;
  assert_int_equal(ferry_store_head_seq(s, customer, &head, &err), FERRY_OK);
  char **ids = calloc(head + 1, sizeof *ids);
  assert_non_null(ids);
  assert_int_equal(ferry_log_iter_open(s, customer, 1, &it, &err), FERRY_OK);
  while ((r = ferry_log_iter_next(it, &seq, &ev, &len)) == 1) {
    assert_int_equal(seq, n + 1);
    Ferry__V1__Event *e = ferry__v1__event__unpack(NULL, len, ev);
    assert_non_null(e);
    assert_int_equal(e->seq, seq);
    assert_true(e->ingested_at_us > 1600000000000000LL);
    assert_non_null(e->change);
    ids[n++] = strdup(e->change->id);
    ferry__v1__event__free_unpacked(e, NULL);
  }
  assert_int_equal(r, 0);
  assert_int_equal(n, head);
  ferry_log_iter_close(it);
  *count = n;
  return ids;
}

static void free_ids(char **ids, uint64_t n) {
  for (uint64_t i = 0; i < n; i++)
    free(ids[i]);
  free(ids);
}

/* Counts the raw keys of a customer in a family (also those above the head). */
static uint64_t count_keys(ferry_store *s, ferry_cf cf, const char *customer, uint64_t *last_seq) {
  ferry_kv_iter *it = NULL;
  ferry_error err;
  const char *k, *v;
  size_t kl, vl;
  uint64_t n = 0;
  assert_int_equal(ferry_kv_iter_open(s, cf, customer, NULL, 0, NULL, 0, &it, &err), FERRY_OK);
  while (ferry_kv_iter_next(it, &k, &kl, &v, &vl) == 1) {
    if (last_seq && kl == 8) *last_seq = ferry_be64_get((const uint8_t *)k);
    n++;
  }
  assert_int_equal(ferry_kv_iter_error(it, &err), FERRY_OK);
  ferry_kv_iter_close(it);
  return n;
}

/* ---- basic appends ------------------------------------------------------------ */

static void test_append_read_back(void **state) {
  fixture *f = *state;
  ferry_store *s = open_store(f->dir, FERRY_STORE_WRITE);
  batch *b = batch_make("c", 0, 5, 50);
  ferry_append_result res = append_ok(s, "acme", b);
  assert_int_equal(res.appended, 5);
  assert_int_equal(res.duplicates, 0);
  assert_int_equal(res.first_seq, 1);
  assert_int_equal(res.head_seq, 5);

  ferry_log_iter *it = NULL;
  ferry_error err;
  uint64_t seq;
  const uint8_t *ev;
  size_t len;
  assert_int_equal(ferry_log_iter_open(s, "acme", 1, &it, &err), FERRY_OK);
  for (size_t i = 0; i < 5; i++) {
    assert_int_equal(ferry_log_iter_next(it, &seq, &ev, &len), 1);
    assert_int_equal(seq, i + 1);
    Ferry__V1__Event *e = ferry__v1__event__unpack(NULL, len, ev);
    assert_non_null(e);
    assert_int_equal(e->seq, i + 1);
    /* The change is stored byte for byte as given. */
    size_t clen = ferry__v1__change__get_packed_size(e->change);
    uint8_t *cbuf = malloc(clen);
    ferry__v1__change__pack(e->change, cbuf);
    assert_int_equal(clen, b->refs[i].pb_len);
    assert_memory_equal(cbuf, b->refs[i].pb, clen);
    assert_string_equal(e->change->id, b->ids[i]);
    free(cbuf);
    ferry__v1__event__free_unpacked(e, NULL);
  }
  assert_int_equal(ferry_log_iter_next(it, &seq, &ev, &len), 0);
  assert_int_equal(ferry_log_iter_next(it, &seq, &ev, &len), 0); /* and stays there */
  ferry_log_iter_close(it);

  /* From the middle, and past the head. */
  assert_int_equal(ferry_log_iter_open(s, "acme", 4, &it, &err), FERRY_OK);
  assert_int_equal(ferry_log_iter_next(it, &seq, &ev, &len), 1);
  assert_int_equal(seq, 4);
  ferry_log_iter_close(it);
  assert_int_equal(ferry_log_iter_open(s, "acme", 6, &it, &err), FERRY_OK);
  assert_int_equal(ferry_log_iter_next(it, &seq, &ev, &len), 0);
  ferry_log_iter_close(it);

  uint64_t head = 0;
  assert_int_equal(ferry_store_head_seq(s, "acme", &head, &err), FERRY_OK);
  assert_int_equal(head, 5);
  assert_int_equal(ferry_store_head_seq(s, "nobody", &head, &err), FERRY_OK);
  assert_int_equal(head, 0);
  ferry_store_close(s);

  /* It survives a reopen. */
  s = open_store(f->dir, FERRY_STORE_WRITE);
  assert_int_equal(ferry_store_head_seq(s, "acme", &head, &err), FERRY_OK);
  assert_int_equal(head, 5);
  ferry_store_close(s);
  batch_free(b);
}

static void test_seqs_consecutive(void **state) {
  fixture *f = *state;
  ferry_store *s = open_store(f->dir, FERRY_STORE_WRITE);
  for (size_t k = 0; k < 10; k++) {
    batch *b = batch_make("c", k * 7, 7, 20);
    ferry_append_result res = append_ok(s, "acme", b);
    assert_int_equal(res.first_seq, k * 7 + 1);
    assert_int_equal(res.head_seq, (k + 1) * 7);
    batch_free(b);
  }
  uint64_t n;
  char **ids = read_log(s, "acme", &n);
  assert_int_equal(n, 70);
  for (uint64_t i = 0; i < n; i++) {
    char want[32];
    snprintf(want, sizeof want, "c-%" PRIu64, i);
    assert_string_equal(ids[i], want);
  }
  free_ids(ids, n);
  ferry_store_close(s);
}

static void test_reappend_is_duplicate(void **state) {
  fixture *f = *state;
  ferry_store *s = open_store(f->dir, FERRY_STORE_WRITE);
  batch *b = batch_make("c", 0, 100, 20);
  append_ok(s, "acme", b);
  ferry_append_result res = append_ok(s, "acme", b);
  assert_int_equal(res.appended, 0);
  assert_int_equal(res.duplicates, 100);
  assert_int_equal(res.first_seq, 0);
  assert_int_equal(res.head_seq, 100);
  ferry_store_close(s);

  /* Also after a reopen (dedup is on disk, not just in memory). */
  s = open_store(f->dir, FERRY_STORE_WRITE);
  res = append_ok(s, "acme", b);
  assert_int_equal(res.appended, 0);
  assert_int_equal(res.duplicates, 100);
  /* Half old, half new. */
  batch *b2 = batch_make("c", 50, 100, 20);
  res = append_ok(s, "acme", b2);
  assert_int_equal(res.appended, 50);
  assert_int_equal(res.duplicates, 50);
  assert_int_equal(res.first_seq, 101);
  assert_int_equal(res.head_seq, 150);
  ferry_store_close(s);
  batch_free(b2);
  batch_free(b);
}

static void test_in_batch_duplicates(void **state) {
  fixture *f = *state;
  ferry_store *s = open_store(f->dir, FERRY_STORE_WRITE);
  batch *b = batch_make("c", 0, 6, 20);
  /* Changes 3 and 5 repeat ids 0 and 1. */
  b->refs[3] = b->refs[0];
  b->refs[5] = b->refs[1];
  ferry_append_result res = append_ok(s, "acme", b);
  assert_int_equal(res.appended, 4);
  assert_int_equal(res.duplicates, 2);
  uint64_t n;
  char **ids = read_log(s, "acme", &n);
  assert_int_equal(n, 4);
  assert_string_equal(ids[0], "c-0");
  assert_string_equal(ids[1], "c-1");
  assert_string_equal(ids[2], "c-2");
  assert_string_equal(ids[3], "c-4");
  free_ids(ids, n);
  ferry_store_close(s);
  batch_free(b);
}

static void test_invalid_appends(void **state) {
  fixture *f = *state;
  ferry_store *s = open_store(f->dir, FERRY_STORE_WRITE);
  ferry_error err;
  ferry_append_result res;
  batch *b = batch_make("c", 0, 3, 20);
  assert_int_equal(ferry_store_append(s, "bad customer", b->refs, b->n, &res, &err), FERRY_EINVAL);
  assert_int_equal(ferry_store_append(s, "", b->refs, b->n, &res, &err), FERRY_EINVAL);
  /* An id that differs from the Change's own rejects the whole batch. */
  b->refs[2].id = "other";
  b->refs[2].id_len = 5;
  assert_int_equal(ferry_store_append(s, "acme", b->refs, b->n, &res, &err), FERRY_EINVAL);
  assert_non_null(strstr(err.msg, "change 3"));
  b->refs[2].id = b->ids[2];
  b->refs[2].id_len = 0;
  assert_int_equal(ferry_store_append(s, "acme", b->refs, b->n, &res, &err), FERRY_EINVAL);
  b->refs[2].id_len = strlen(b->ids[2]);
  uint8_t junk[3] = {0xff, 0xff, 0xff};
  b->refs[1].pb = junk;
  b->refs[1].pb_len = sizeof junk;
  assert_int_equal(ferry_store_append(s, "acme", b->refs, b->n, &res, &err), FERRY_EINVAL);
  uint64_t head = 1;
  assert_int_equal(ferry_store_head_seq(s, "acme", &head, &err), FERRY_OK);
  assert_int_equal(head, 0);
  /* An empty batch appends nothing and succeeds. */
  assert_int_equal(ferry_store_append(s, "acme", NULL, 0, &res, &err), FERRY_OK);
  assert_int_equal(res.appended, 0);
  assert_int_equal(res.head_seq, 0);
  ferry_store_close(s);
  batch_free(b);
}

/* ---- customers ------------------------------------------------------------------ */

typedef struct names {
  char list[8][FERRY_CUSTOMER_MAX + 1];
  int n;
} names;

static int add_name(void *arg, const char *customer) {
  names *l = arg;
  if (l->n < 8) strcpy(l->list[l->n++], customer);
  return 0;
}

static void test_customers_isolated(void **state) {
  fixture *f = *state;
  ferry_store *s = open_store(f->dir, FERRY_STORE_WRITE);
  batch *ba = batch_make("same", 0, 3, 20), *bab = batch_make("same", 0, 4, 20);
  batch *bb = batch_make("b", 0, 2, 20);
  /* "a" is a prefix of "ab"; the ids are the same in both. */
  assert_int_equal(append_ok(s, "ab", bab).appended, 4);
  assert_int_equal(append_ok(s, "a", ba).appended, 3); /* not duplicates of ab's */
  assert_int_equal(append_ok(s, "b", bb).appended, 2);

  uint64_t n;
  char **ids = read_log(s, "a", &n);
  assert_int_equal(n, 3);
  free_ids(ids, n);
  ids = read_log(s, "ab", &n);
  assert_int_equal(n, 4);
  free_ids(ids, n);
  assert_int_equal(count_keys(s, FERRY_CF_EVENTS, "a", NULL), 3);
  assert_int_equal(count_keys(s, FERRY_CF_DEDUP, "a", NULL), 3);
  assert_int_equal(count_keys(s, FERRY_CF_EVENTS, "ab", NULL), 4);
  assert_int_equal(count_keys(s, FERRY_CF_EVENTS, "b", NULL), 2);
  assert_int_equal(count_keys(s, FERRY_CF_EVENTS, "c", NULL), 0);

  /* Byte order of the ids, only customers with a log. */
  ferry_wbatch *w = ferry_wbatch_create(s, "zz-no-log");
  ferry_wbatch_put(w, FERRY_CF_META, "checkpoint", 10, "1", 1);
  ferry_error err;
  assert_int_equal(ferry_wbatch_commit(w, false, &err), FERRY_OK);
  ferry_wbatch_destroy(w);
  names l = {.n = 0};
  assert_int_equal(ferry_store_customers(s, add_name, &l, &err), FERRY_OK);
  assert_int_equal(l.n, 3);
  assert_string_equal(l.list[0], "a");
  assert_string_equal(l.list[1], "ab");
  assert_string_equal(l.list[2], "b");
  ferry_store_close(s);
  batch_free(ba);
  batch_free(bab);
  batch_free(bb);
}

/* ---- locking and readers -------------------------------------------------------- */

static void test_second_writer_busy(void **state) {
  fixture *f = *state;
  ferry_store *s = open_store(f->dir, FERRY_STORE_WRITE);
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    ferry_store *s2 = NULL;
    ferry_error err;
    ferry_error_clear(&err);
    ferry_status st = ferry_store_open(&s2, f->dir, FERRY_STORE_WRITE, &err);
    char msg[1100];
    int n = snprintf(msg, sizeof msg, "%d %s", (int)st, err.msg);
    if (write(fds[1], msg, (size_t)n) != n) _exit(2);
    _exit(0);
  }
  close(fds[1]);
  char msg[1100] = {0};
  ssize_t r = read(fds[0], msg, sizeof msg - 1);
  close(fds[0]);
  int status;
  waitpid(pid, &status, 0);
  assert_true(r > 0);
  char want[256];
  snprintf(want, sizeof want, "%d data directory %s is in use by pid %ld", FERRY_EBUSY, f->dir,
           (long)getpid());
  assert_string_equal(msg, want);

  /* In the same process too (the lock is per open, not per process). */
  ferry_store *s2 = NULL;
  ferry_error err;
  assert_int_equal(ferry_store_open(&s2, f->dir, FERRY_STORE_WRITE, &err), FERRY_EBUSY);
  assert_null(s2);
  ferry_store_close(s);
  /* Released on close. */
  s = open_store(f->dir, FERRY_STORE_WRITE);
  ferry_store_close(s);
}

static void test_reader_beside_writer(void **state) {
  fixture *f = *state;
  ferry_error err;
  ferry_store *r = NULL;
  char missing[128];
  snprintf(missing, sizeof missing, "%s/nothing-here", f->dir);
  assert_int_equal(ferry_store_open(&r, missing, FERRY_STORE_READ, &err), FERRY_ENOTFOUND);
  assert_non_null(strstr(err.msg, "no ferry data"));
  assert_null(r);

  ferry_store *w = open_store(f->dir, FERRY_STORE_WRITE);
  batch *b1 = batch_make("c", 0, 10, 20), *b2 = batch_make("c", 10, 5, 20);
  append_ok(w, "acme", b1);
  r = open_store(f->dir, FERRY_STORE_READ);
  uint64_t head = 0, n;
  assert_int_equal(ferry_store_head_seq(r, "acme", &head, &err), FERRY_OK);
  assert_int_equal(head, 10);
  append_ok(w, "acme", b2);
  assert_int_equal(ferry_store_refresh(r, &err), FERRY_OK);
  char **ids = read_log(r, "acme", &n);
  assert_int_equal(n, 15);
  free_ids(ids, n);
  /* A reader cannot write. */
  ferry_append_result res;
  assert_int_equal(ferry_store_append(r, "acme", b1->refs, b1->n, &res, &err), FERRY_EINVAL);
  ferry_store_close(w);
  /* Still readable after the writer left; a second reader is fine. */
  ferry_store *r2 = open_store(f->dir, FERRY_STORE_READ);
  assert_int_equal(ferry_store_head_seq(r2, "acme", &head, &err), FERRY_OK);
  assert_int_equal(head, 15);
  ferry_store_close(r2);
  ferry_store_close(r);
  batch_free(b1);
  batch_free(b2);
}

/* ---- concurrency ---------------------------------------------------------------- */

#define CONC_THREADS 4
#define CONC_APPENDS 150
#define CONC_BATCH 8

typedef struct worker {
  ferry_store *s;
  const char *customer;
  int id;
  ferry_status st;
} worker;

static void *worker_main(void *arg) {
  worker *w = arg;
  char tag[16];
  snprintf(tag, sizeof tag, "t%d", w->id);
  for (size_t k = 0; k < CONC_APPENDS && !w->st; k++) {
    batch *b = batch_make(tag, k * CONC_BATCH, CONC_BATCH, 40);
    ferry_append_result res;
    ferry_error err;
    w->st = ferry_store_append(w->s, w->customer, b->refs, b->n, &res, &err);
    if (!w->st && (res.appended != CONC_BATCH || res.head_seq < res.first_seq + CONC_BATCH - 1))
      w->st = FERRY_EINTERNAL;
    batch_free(b);
  }
  return NULL;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_concurrent_appends(void **state) {
  fixture *f = *state;
  ferry_store *s = open_store(f->dir, FERRY_STORE_WRITE);
  /* Threads 0 and 1 share a customer; 2 and 3 have their own. */
  const char *customers[CONC_THREADS] = {"shared", "shared", "solo2", "solo3"};
  pthread_t t[CONC_THREADS];
  worker w[CONC_THREADS];
  for (int i = 0; i < CONC_THREADS; i++) {
    w[i] = (worker){s, customers[i], i, FERRY_OK};
    assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
  }
  for (int i = 0; i < CONC_THREADS; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(w[i].st, FERRY_OK);
  }
  uint64_t want[] = {2 * CONC_APPENDS * CONC_BATCH, CONC_APPENDS * CONC_BATCH,
                     CONC_APPENDS * CONC_BATCH};
  const char *names_[] = {"shared", "solo2", "solo3"};
  for (int c = 0; c < 3; c++) {
    uint64_t n;
    char **ids = read_log(s, names_[c], &n); /* checks 1..head without a gap */
    assert_int_equal(n, want[c]);
    qsort(ids, n, sizeof *ids, cmp_str);
    for (uint64_t i = 1; i < n; i++)
      assert_true(strcmp(ids[i - 1], ids[i]) != 0);
    free_ids(ids, n);
  }
  ferry_store_stats st;
  ferry_store_stats_get(s, &st);
  print_message("concurrent: %" PRIu64 " appends, %" PRIu64 " syncs, %" PRIu64 " groups\n",
                st.appends, st.syncs, st.groups);
  assert_int_equal(st.appends, CONC_THREADS * CONC_APPENDS);
  assert_int_equal(st.events, CONC_THREADS * CONC_APPENDS * CONC_BATCH);
  assert_true(st.syncs < st.appends); /* group commit shared syncs */
  ferry_store_close(s);
}

typedef struct async_ctx {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  ferry_status st;
  ferry_append_result res;
  char msg[1024];
} async_ctx;

static void async_cb(void *arg, ferry_status st, const ferry_append_result *res,
                     const ferry_error *err) {
  async_ctx *c = arg;
  pthread_mutex_lock(&c->mu);
  c->st = st;
  c->res = *res;
  snprintf(c->msg, sizeof c->msg, "%s", err ? err->msg : "");
  c->done++;
  pthread_cond_signal(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

static void async_wait(async_ctx *c, int n) {
  pthread_mutex_lock(&c->mu);
  while (c->done < n)
    pthread_cond_wait(&c->cv, &c->mu);
  pthread_mutex_unlock(&c->mu);
}

static void test_append_async(void **state) {
  fixture *f = *state;
  ferry_store *s = open_store(f->dir, FERRY_STORE_WRITE);
  async_ctx c = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
  batch *b = batch_make("c", 0, 10, 20);
  assert_int_equal(ferry_store_append_async(s, "acme", b->refs, b->n, async_cb, &c), FERRY_OK);
  async_wait(&c, 1);
  assert_int_equal(c.st, FERRY_OK);
  assert_int_equal(c.res.appended, 10);
  assert_int_equal(c.res.head_seq, 10);
  /* An invalid batch fails through the callback, with the detail. */
  b->refs[4].id = "nope";
  b->refs[4].id_len = 4;
  assert_int_equal(ferry_store_append_async(s, "acme", b->refs, b->n, async_cb, &c), FERRY_OK);
  async_wait(&c, 2);
  assert_int_equal(c.st, FERRY_EINVAL);
  assert_non_null(strstr(c.msg, "change 5"));
  assert_int_equal(ferry_store_append_async(s, "acme", b->refs, b->n, NULL, &c), FERRY_EINVAL);
  ferry_store_close(s);
  batch_free(b);
}

/* ---- large batches -------------------------------------------------------------- */

static void test_large_chunked_batch(void **state) {
  fixture *f = *state;
  ferry_store *s = open_store(f->dir, FERRY_STORE_WRITE);
  batch *b = batch_make("big", 0, 50000, 100);
  ferry_append_result res = append_ok(s, "acme", b);
  assert_int_equal(res.appended, 50000);
  assert_int_equal(res.head_seq, 50000);
  ferry_store_stats st;
  ferry_store_stats_get(s, &st);
  assert_true(st.chunks >= 2);
  assert_int_equal(st.syncs, 1);
  /* Again: all duplicates, found partly across chunk boundaries. */
  res = append_ok(s, "acme", b);
  assert_int_equal(res.duplicates, 50000);
  uint64_t n;
  char **ids = read_log(s, "acme", &n);
  assert_int_equal(n, 50000);
  free_ids(ids, n);
  ferry_store_close(s);
  batch_free(b);
}

/* ---- recovery after kill -9 ----------------------------------------------------- */

#define KILL_BATCH 60000 /* over the chunk size: written in unsynced chunks, head last */
#define KILL_ROUNDS 6

/* The child: appends batch after batch, reporting each acknowledged head. */
static void kill_child(const char *dir, int fd) {
  ferry_store *s = NULL;
  ferry_error err;
  uint64_t head = 0;
  if (ferry_store_open(&s, dir, FERRY_STORE_WRITE, &err) ||
      ferry_store_head_seq(s, "acme", &head, &err))
    _exit(3);
  if (write(fd, &head, sizeof head) != sizeof head) _exit(4);
  for (uint64_t k = head / KILL_BATCH;; k++) {
    batch *b = batch_make("k", k * KILL_BATCH, KILL_BATCH, 64);
    ferry_append_result res;
    if (ferry_store_append(s, "acme", b->refs, b->n, &res, &err)) _exit(5);
    if (write(fd, &res.head_seq, sizeof res.head_seq) != sizeof res.head_seq) _exit(6);
    batch_free(b);
  }
}

/* Kills a child at a random moment; returns the last head it acknowledged. */
static uint64_t run_and_kill(const char *dir, unsigned *seed) {
  int fds[2];
  uint64_t acked = 0, v;
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    kill_child(dir, fds[1]);
  }
  close(fds[1]);
  assert_int_equal(read(fds[0], &acked, sizeof acked), sizeof acked); /* open and ready */
  struct timespec ts = {0, (long)(50 + rand_r(seed) % 700) * 1000000L};
  nanosleep(&ts, NULL);
  kill(pid, SIGKILL);
  int status;
  waitpid(pid, &status, 0);
  assert_true(WIFSIGNALED(status)); /* it did not fail on its own */
  while (read(fds[0], &v, sizeof v) == sizeof v)
    acked = v;
  close(fds[0]);
  return acked;
}

/* What a reader sees before any writer recovers: events above the head? */
static uint64_t leftovers(const char *dir) {
  ferry_store *r = open_store(dir, FERRY_STORE_READ);
  ferry_error err;
  uint64_t head = 0, last = 0;
  assert_int_equal(ferry_store_head_seq(r, "acme", &head, &err), FERRY_OK);
  uint64_t raw = count_keys(r, FERRY_CF_EVENTS, "acme", &last);
  uint64_t n;
  char **ids = read_log(r, "acme", &n); /* readers never see them */
  free_ids(ids, n);
  assert_int_equal(n, head);
  ferry_store_close(r);
  return raw - head;
}

/* After recovery: the log is exactly 1..head, and dedup holds exactly its ids. */
static uint64_t check_recovered(ferry_store *s, uint64_t acked) {
  uint64_t n, last = 0;
  char **ids = read_log(s, "acme", &n);
  assert_true(n >= acked);
  assert_int_equal(n % KILL_BATCH, 0); /* whole batches only */
  for (uint64_t i = 0; i < n; i++) {
    char want[32];
    snprintf(want, sizeof want, "k-%" PRIu64, i);
    assert_string_equal(ids[i], want);
  }
  free_ids(ids, n);
  assert_int_equal(count_keys(s, FERRY_CF_EVENTS, "acme", &last), n);
  assert_int_equal(last, n);
  assert_int_equal(count_keys(s, FERRY_CF_DEDUP, "acme", NULL), n);
  return n;
}

static void test_recovery_after_kill(void **state) {
  fixture *f = *state;
  unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
  uint64_t seen_leftovers = 0;
  print_message("kill test seed %u\n", seed);
  for (int round = 0; round < KILL_ROUNDS; round++) {
    uint64_t acked = run_and_kill(f->dir, &seed);
    uint64_t left = leftovers(f->dir);
    seen_leftovers += left > 0;
    ferry_store *s = open_store(f->dir, FERRY_STORE_WRITE); /* recovers */
    uint64_t head = check_recovered(s, acked);
    print_message("round %d: acked %" PRIu64 ", head %" PRIu64 ", leftovers %" PRIu64 "\n", round,
                  acked, head, left);
    /* The batch that was in flight is new to dedup, not a duplicate of its leftovers. */
    batch *next = batch_make("k", head, KILL_BATCH, 64);
    ferry_append_result res = append_ok(s, "acme", next);
    assert_int_equal(res.appended, KILL_BATCH);
    assert_int_equal(res.duplicates, 0);
    assert_int_equal(res.first_seq, head + 1);
    batch_free(next);
    if (head > 0) {
      batch *prev = batch_make("k", head - KILL_BATCH, KILL_BATCH, 64);
      assert_int_equal(append_ok(s, "acme", prev).duplicates, KILL_BATCH);
      batch_free(prev);
    }
    check_recovered(s, head + KILL_BATCH);
    ferry_store_close(s);
  }
  print_message("rounds with leftovers to recover: %" PRIu64 " of %d\n", seen_leftovers,
                KILL_ROUNDS);
}

/* ---- generic kv ----------------------------------------------------------------- */

static void test_kv_basics(void **state) {
  fixture *f = *state;
  ferry_store *s = open_store(f->dir, FERRY_STORE_WRITE);
  ferry_error err;
  char *val = NULL;
  size_t vlen = 0;

  ferry_wbatch *b = ferry_wbatch_create(s, "acme");
  assert_non_null(b);
  assert_null(ferry_wbatch_create(s, "not valid!"));
  const char *keys[] = {"row/1", "row/2", "row/3", "row/4", "zzz"};
  for (int i = 0; i < 5; i++)
    ferry_wbatch_put(b, FERRY_CF_MIRROR, keys[i], strlen(keys[i]), keys[i], strlen(keys[i]));
  ferry_wbatch_put(b, FERRY_CF_MIRROR, "", 0, "empty key", 9);
  assert_int_equal(ferry_wbatch_count(b), 6);
  assert_int_equal(ferry_wbatch_commit(b, true, &err), FERRY_OK);
  ferry_wbatch_destroy(b);
  /* Another customer's keys never show. */
  b = ferry_wbatch_create(s, "acme2");
  ferry_wbatch_put(b, FERRY_CF_MIRROR, "row/1", 5, "other", 5);
  assert_int_equal(ferry_wbatch_commit(b, false, &err), FERRY_OK);
  ferry_wbatch_destroy(b);

  assert_int_equal(ferry_kv_get(s, FERRY_CF_MIRROR, "acme", "row/2", 5, &val, &vlen, &err),
                   FERRY_OK);
  assert_int_equal(vlen, 5);
  assert_string_equal(val, "row/2");
  free(val);
  assert_int_equal(ferry_kv_get(s, FERRY_CF_MIRROR, "acme", "row/9", 5, &val, &vlen, &err),
                   FERRY_ENOTFOUND);
  assert_int_equal(ferry_kv_get(s, FERRY_CF_DESIRED, "acme", "row/2", 5, &val, &vlen, &err),
                   FERRY_ENOTFOUND);

  /* [row/2, row/4) */
  ferry_kv_iter *it = NULL;
  const char *k, *v;
  size_t kl, vl;
  assert_int_equal(
      ferry_kv_iter_open(s, FERRY_CF_MIRROR, "acme", "row/2", 5, "row/4", 5, &it, &err), FERRY_OK);
  assert_int_equal(ferry_kv_iter_next(it, &k, &kl, &v, &vl), 1);
  assert_int_equal(kl, 5);
  assert_memory_equal(k, "row/2", 5);
  assert_int_equal(ferry_kv_iter_next(it, &k, &kl, &v, &vl), 1);
  assert_memory_equal(k, "row/3", 5);
  assert_int_equal(ferry_kv_iter_next(it, &k, &kl, &v, &vl), 0);
  ferry_kv_iter_close(it);
  assert_int_equal(count_keys(s, FERRY_CF_MIRROR, "acme", NULL), 6);
  assert_int_equal(count_keys(s, FERRY_CF_MIRROR, "acme2", NULL), 1);

  /* delete, delete_range [row/2, zzz), and to the end. */
  b = ferry_wbatch_create(s, "acme");
  ferry_wbatch_delete(b, FERRY_CF_MIRROR, "", 0);
  ferry_wbatch_delete_range(b, FERRY_CF_MIRROR, "row/2", 5, "zzz", 3);
  assert_int_equal(ferry_wbatch_commit(b, true, &err), FERRY_OK);
  ferry_wbatch_destroy(b);
  assert_int_equal(count_keys(s, FERRY_CF_MIRROR, "acme", NULL), 2); /* row/1, zzz */
  b = ferry_wbatch_create(s, "acme");
  ferry_wbatch_delete_range(b, FERRY_CF_MIRROR, NULL, 0, NULL, 0);
  assert_int_equal(ferry_wbatch_commit(b, true, &err), FERRY_OK);
  ferry_wbatch_destroy(b);
  assert_int_equal(count_keys(s, FERRY_CF_MIRROR, "acme", NULL), 0);
  assert_int_equal(count_keys(s, FERRY_CF_MIRROR, "acme2", NULL), 1);
  ferry_store_close(s);
}

static void test_wbatch_guards_log(void **state) {
  fixture *f = *state;
  ferry_store *s = open_store(f->dir, FERRY_STORE_WRITE);
  ferry_error err;
  batch *bt = batch_make("c", 0, 3, 10);
  append_ok(s, "acme", bt);
  ferry_wbatch *b = ferry_wbatch_create(s, "acme");
  ferry_wbatch_put(b, FERRY_CF_EVENTS, "x", 1, "y", 1);
  assert_int_equal(ferry_wbatch_commit(b, true, &err), FERRY_EINVAL);
  ferry_wbatch_destroy(b);
  b = ferry_wbatch_create(s, "acme");
  ferry_wbatch_put(b, FERRY_CF_META, "head", 4, "12345678", 8);
  assert_int_equal(ferry_wbatch_commit(b, true, &err), FERRY_EINVAL);
  ferry_wbatch_destroy(b);
  b = ferry_wbatch_create(s, "acme");
  ferry_wbatch_delete_range(b, FERRY_CF_META, NULL, 0, NULL, 0);
  assert_int_equal(ferry_wbatch_commit(b, true, &err), FERRY_EINVAL);
  ferry_wbatch_destroy(b);
  /* Meta names around "head" are fine. */
  b = ferry_wbatch_create(s, "acme");
  ferry_wbatch_put(b, FERRY_CF_META, "heads", 5, "1", 1);
  ferry_wbatch_delete_range(b, FERRY_CF_META, "i", 1, NULL, 0);
  ferry_wbatch_delete_range(b, FERRY_CF_META, "a", 1, "head", 4);
  assert_int_equal(ferry_wbatch_commit(b, true, &err), FERRY_OK);
  ferry_wbatch_destroy(b);
  uint64_t head;
  assert_int_equal(ferry_store_head_seq(s, "acme", &head, &err), FERRY_OK);
  assert_int_equal(head, 3);
  assert_int_equal(ferry_store_sync_wal(s, &err), FERRY_OK);
  ferry_store_close(s);
  batch_free(bt);
}

/* Test keys "pN/rest" are scanned by "pN/"; any other key only by key. */
static size_t slash_prefix(const void *key, size_t klen) {
  const char *k = key;
  return klen >= 3 && k[0] == 'p' && k[2] == '/' ? 3 : 0;
}

typedef struct seen {
  char keys[32][8];
  int n;
  ferry_wbatch *write_to; /* writes a key per visit, as a fold's callbacks may */
} seen;

static ferry_status see(void *arg, const char *rest, size_t len) {
  seen *sn = arg;
  if (sn->n < 32) snprintf(sn->keys[sn->n++], 8, "%.*s", (int)len, rest);
  if (sn->write_to) ferry_wbatch_put(sn->write_to, FERRY_CF_INDEX, "p9/w", 4, "", 0);
  return FERRY_OK;
}

static void scan_expect(ferry_wbatch *b, const char *prefix, const char *want) {
  seen sn = {.n = 0};
  ferry_error err;
  assert_int_equal(ferry_wbatch_scan(b, prefix, strlen(prefix), see, &sn, &err), FERRY_OK);
  char got[128] = "";
  for (int i = 0; i < sn.n; i++) {
    strcat(got, sn.keys[i]);
    strcat(got, " ");
  }
  assert_string_equal(got, want);
}

static void test_indexed_batch(void **state) {
  fixture *f = *state;
  ferry_store *s = open_store(f->dir, FERRY_STORE_WRITE);
  ferry_error err;
  char *val = NULL;
  size_t vlen;
  ferry_wbatch *b = ferry_wbatch_create(s, "acme");
  ferry_wbatch_put(b, FERRY_CF_INDEX, "p1/a", 4, "old-a", 5);
  ferry_wbatch_put(b, FERRY_CF_INDEX, "p1/c", 4, "old-c", 5);
  ferry_wbatch_put(b, FERRY_CF_INDEX, "p2/x", 4, "", 0);
  assert_int_equal(ferry_wbatch_commit(b, false, &err), FERRY_OK);
  ferry_wbatch_destroy(b);
  /* another customer's keys never show */
  b = ferry_wbatch_create(s, "acmf");
  ferry_wbatch_put(b, FERRY_CF_INDEX, "p1/z", 4, "", 0);
  assert_int_equal(ferry_wbatch_commit(b, false, &err), FERRY_OK);
  ferry_wbatch_destroy(b);

  b = ferry_wbatch_create_indexed(s, "acme", slash_prefix);
  assert_non_null(b);
  scan_expect(b, "p1/", "a c "); /* the store only, so far */
  ferry_wbatch_put(b, FERRY_CF_INDEX, "p1/b", 4, "new-b", 5);
  ferry_wbatch_put(b, FERRY_CF_INDEX, "p1/a", 4, "new-a", 5);
  ferry_wbatch_delete(b, FERRY_CF_INDEX, "p1/c", 4);
  ferry_wbatch_put(b, FERRY_CF_INDEX, "p2/y", 4, "", 0);
  ferry_wbatch_put(b, FERRY_CF_INDEX, "q", 1, "by-key", 6);
  assert_int_equal(ferry_wbatch_get(b, FERRY_CF_INDEX, "p1/a", 4, &val, &vlen, &err), FERRY_OK);
  assert_string_equal(val, "new-a");
  free(val);
  assert_int_equal(ferry_wbatch_get(b, FERRY_CF_INDEX, "p1/c", 4, &val, &vlen, &err), FERRY_ENOTFOUND);
  assert_int_equal(ferry_wbatch_get(b, FERRY_CF_INDEX, "q", 1, &val, &vlen, &err), FERRY_OK);
  free(val);
  /* The store does not see them yet; scans through the batch do, in key order. */
  assert_int_equal(ferry_kv_get(s, FERRY_CF_INDEX, "acme", "p1/b", 4, &val, &vlen, &err),
                   FERRY_ENOTFOUND);
  scan_expect(b, "p1/", "a b ");
  scan_expect(b, "p2/", "x y ");
  scan_expect(b, "p3/", "");
  /* a key deleted then written again is there; written then deleted is not */
  ferry_wbatch_delete(b, FERRY_CF_INDEX, "p2/x", 4);
  ferry_wbatch_put(b, FERRY_CF_INDEX, "p2/x", 4, "", 0);
  ferry_wbatch_put(b, FERRY_CF_INDEX, "p2/w", 4, "", 0);
  ferry_wbatch_delete(b, FERRY_CF_INDEX, "p2/w", 4);
  scan_expect(b, "p2/", "x y ");
  /* only whole scan prefixes */
  seen sn = {.n = 0};
  assert_int_equal(ferry_wbatch_scan(b, "p1", 2, see, &sn, &err), FERRY_EINVAL);
  /* a scan's callback may write to the batch */
  sn.write_to = b;
  assert_int_equal(ferry_wbatch_scan(b, "p1/", 3, see, &sn, &err), FERRY_OK);
  assert_int_equal(sn.n, 2);
  scan_expect(b, "p9/", "w ");

  /* A batch reading through b (b being committed): its writes, then b's, then the store. */
  ferry_wbatch *b2 = ferry_wbatch_create_indexed(s, "acme", slash_prefix);
  ferry_wbatch_read_through(b2, b);
  ferry_wbatch_delete(b2, FERRY_CF_INDEX, "p1/a", 4);
  ferry_wbatch_put(b2, FERRY_CF_INDEX, "p1/0", 4, "", 0);
  ferry_wbatch_put(b2, FERRY_CF_INDEX, "p1/c", 4, "", 0);
  scan_expect(b2, "p1/", "0 b c ");
  assert_int_equal(ferry_wbatch_commit_start(b, &err), FERRY_OK);
  assert_int_equal(ferry_wbatch_commit_wait(b, &err), FERRY_OK);
  scan_expect(b2, "p1/", "0 b c "); /* the same once b is in the store */
  ferry_wbatch_read_through(b2, NULL);
  ferry_wbatch_destroy(b);
  scan_expect(b2, "p1/", "0 b c ");
  assert_int_equal(ferry_wbatch_commit(b2, true, &err), FERRY_OK);
  ferry_wbatch_destroy(b2);
  /* a plain batch scans the store as it is */
  b = ferry_wbatch_create(s, "acme");
  scan_expect(b, "p1/", "0 b c ");
  scan_expect(b, "p2/", "x y ");
  ferry_wbatch_destroy(b);
  assert_int_equal(count_keys(s, FERRY_CF_INDEX, "acme", NULL), 7); /* p1 0 b c, p2 x y, p9 w, q */

  /* Range deletes need a plain batch. */
  b = ferry_wbatch_create_indexed(s, "acme", slash_prefix);
  ferry_wbatch_delete_range(b, FERRY_CF_INDEX, NULL, 0, NULL, 0);
  assert_int_equal(ferry_wbatch_commit(b, true, &err), FERRY_EINVAL);
  ferry_wbatch_destroy(b);
  /* A plain batch reads the store. */
  b = ferry_wbatch_create(s, "acme");
  assert_int_equal(ferry_wbatch_get(b, FERRY_CF_INDEX, "q", 1, &val, &vlen, &err), FERRY_OK);
  assert_string_equal(val, "by-key");
  free(val);
  ferry_wbatch_destroy(b);
  ferry_store_close(s);
}

/* Random puts and deletes in the store, a batch being committed and a batch reading through
 * it: every scan through the top batch equals a model that applies the same writes in order. */
enum { SCAN_PREFIXES = 3, SCAN_RESTS = 24 };

static void model_expect(ferry_wbatch *b, const bool live[SCAN_PREFIXES][SCAN_RESTS], int px,
                         unsigned seed) {
  char want[SCAN_RESTS][16], prefix[16];
  int n = 0;
  for (int r = 0; r < SCAN_RESTS; r++)
    if (live[px][r]) snprintf(want[n++], sizeof want[0], "%d", r);
  qsort(want, (size_t)n, sizeof want[0], (int (*)(const void *, const void *))strcmp);
  char expect[256] = "";
  for (int i = 0; i < n; i++) {
    strcat(expect, want[i]);
    strcat(expect, " ");
  }
  snprintf(prefix, sizeof prefix, "p%d/", px);
  seen sn = {.n = 0};
  ferry_error err;
  assert_int_equal(ferry_wbatch_scan(b, prefix, 3, see, &sn, &err), FERRY_OK);
  char got[256] = "";
  for (int i = 0; i < sn.n; i++) {
    strcat(got, sn.keys[i]);
    strcat(got, " ");
  }
  if (strcmp(got, expect) != 0) fail_msg("seed %u, prefix %s: got '%s', want '%s'", seed, prefix, got, expect);
}

static void random_writes(ferry_wbatch *b, bool live[SCAN_PREFIXES][SCAN_RESTS], unsigned *s, int n) {
  for (int i = 0; i < n; i++) {
    *s = *s * 1103515245u + 12345u;
    unsigned r = (*s >> 8);
    int px = (int)(r % SCAN_PREFIXES), rest = (int)((r / 7) % SCAN_RESTS);
    char key[32];
    int klen = snprintf(key, sizeof key, "p%d/%d", px, rest);
    if ((r / 200) % 3 == 0) {
      ferry_wbatch_delete(b, FERRY_CF_INDEX, key, (size_t)klen);
      live[px][rest] = false;
    } else {
      ferry_wbatch_put(b, FERRY_CF_INDEX, key, (size_t)klen, "", 0);
      live[px][rest] = true;
    }
  }
}

static void test_scan_model(void **state) {
  fixture *f = *state;
  ferry_store *s = open_store(f->dir, FERRY_STORE_WRITE);
  ferry_error err;
  for (unsigned seed = 1; seed <= 40; seed++) {
    char customer[16];
    snprintf(customer, sizeof customer, "m%u", seed);
    bool live[SCAN_PREFIXES][SCAN_RESTS] = {{false}};
    unsigned rs = seed;
    ferry_wbatch *b = ferry_wbatch_create(s, customer);
    random_writes(b, live, &rs, 30);
    assert_int_equal(ferry_wbatch_commit(b, false, &err), FERRY_OK);
    ferry_wbatch_destroy(b);
    ferry_wbatch *under = ferry_wbatch_create_indexed(s, customer, slash_prefix);
    random_writes(under, live, &rs, 25);
    for (int px = 0; px < SCAN_PREFIXES; px++) model_expect(under, live, px, seed);
    ferry_wbatch *top = ferry_wbatch_create_indexed(s, customer, slash_prefix);
    ferry_wbatch_read_through(top, under);
    assert_int_equal(ferry_wbatch_commit_start(under, &err), FERRY_OK);
    for (int round = 0; round < 4; round++) { /* scans while under is being written */
      random_writes(top, live, &rs, 10);
      for (int px = 0; px < SCAN_PREFIXES; px++) model_expect(top, live, px, seed);
    }
    assert_int_equal(ferry_wbatch_commit_wait(under, &err), FERRY_OK);
    ferry_wbatch_read_through(top, NULL);
    ferry_wbatch_destroy(under);
    for (int px = 0; px < SCAN_PREFIXES; px++) model_expect(top, live, px, seed);
    assert_int_equal(ferry_wbatch_commit(top, false, &err), FERRY_OK);
    ferry_wbatch_destroy(top);
    b = ferry_wbatch_create(s, customer); /* and the store alone, after both */
    for (int px = 0; px < SCAN_PREFIXES; px++) model_expect(b, live, px, seed);
    ferry_wbatch_destroy(b);
  }
  ferry_store_close(s);
}

/* Writes key=val to family cf of acme's store straight, past any filter. */
static void put_straight(ferry_store *s, ferry_cf cf, const char *key, const char *val) {
  ferry_error err;
  ferry_wbatch *b = ferry_wbatch_create(s, "acme");
  ferry_wbatch_put(b, cf, key, strlen(key), val, strlen(val));
  assert_int_equal(ferry_wbatch_commit(b, false, &err), FERRY_OK);
  ferry_wbatch_destroy(b);
}

static ferry_status get_through(ferry_wbatch *b, ferry_cf cf, const char *key) {
  ferry_error err;
  char *val = NULL;
  size_t vlen;
  ferry_status st = ferry_wbatch_get(b, cf, key, strlen(key), &val, &vlen, &err);
  free(val);
  return st;
}

/* A write filter answers for the families it covers, from what batches
 * using it committed: a key or scan prefix none of them wrote is "not
 * found" without the store. Here keys written past the filter (which its
 * contract forbids) show that the store is not asked; a family it does not
 * cover is read as before. */
static void test_write_filter(void **state) {
  fixture *f = *state;
  ferry_store *s = open_store(f->dir, FERRY_STORE_WRITE);
  ferry_error err;
  ferry_wfilter *flt = ferry_wfilter_create(4096, 1u << FERRY_CF_MIRROR | 1u << FERRY_CF_INDEX);
  assert_non_null(flt);
  ferry_wbatch *b = ferry_wbatch_create_indexed(s, "acme", slash_prefix);
  ferry_wbatch_use_filter(b, flt);
  ferry_wbatch_put(b, FERRY_CF_MIRROR, "row1", 4, "v1", 2);
  ferry_wbatch_put(b, FERRY_CF_INDEX, "p1/a", 4, "", 0);
  assert_int_equal(ferry_wbatch_commit_start(b, &err), FERRY_OK);

  ferry_wbatch *b2 = ferry_wbatch_create_indexed(s, "acme", slash_prefix);
  ferry_wbatch_use_filter(b2, flt);
  ferry_wbatch_read_through(b2, b);
  assert_int_equal(ferry_wbatch_commit_wait(b, &err), FERRY_OK);
  ferry_wbatch_read_through(b2, NULL);
  /* what the first batch wrote comes from the store */
  assert_int_equal(get_through(b2, FERRY_CF_MIRROR, "row1"), FERRY_OK);
  scan_expect(b2, "p1/", "a ");
  /* written past the filter: the store has them, the filter says no */
  put_straight(s, FERRY_CF_MIRROR, "row2", "v2");
  put_straight(s, FERRY_CF_INDEX, "p2/b", "");
  put_straight(s, FERRY_CF_DESIRED, "ent1", "d1");
  assert_int_equal(get_through(b2, FERRY_CF_MIRROR, "row2"), FERRY_ENOTFOUND);
  scan_expect(b2, "p2/", "");
  assert_int_equal(get_through(b2, FERRY_CF_DESIRED, "ent1"), FERRY_OK); /* not covered */
  /* its own writes it reads as always; once committed, the next batch finds them */
  ferry_wbatch_put(b2, FERRY_CF_MIRROR, "row3", 4, "v3", 2);
  ferry_wbatch_put(b2, FERRY_CF_INDEX, "p3/c", 4, "", 0);
  assert_int_equal(get_through(b2, FERRY_CF_MIRROR, "row3"), FERRY_OK);
  assert_int_equal(ferry_wbatch_commit(b2, false, &err), FERRY_OK);
  ferry_wbatch *b3 = ferry_wbatch_create_indexed(s, "acme", slash_prefix);
  ferry_wbatch_use_filter(b3, flt);
  assert_int_equal(get_through(b3, FERRY_CF_MIRROR, "row3"), FERRY_OK);
  scan_expect(b3, "p3/", "c ");
  /* without the filter the store answers */
  ferry_wbatch *plain = ferry_wbatch_create_indexed(s, "acme", slash_prefix);
  assert_int_equal(get_through(plain, FERRY_CF_MIRROR, "row2"), FERRY_OK);
  scan_expect(plain, "p2/", "b ");
  ferry_wbatch_destroy(plain);
  ferry_wbatch_destroy(b3);
  ferry_wbatch_destroy(b2);
  ferry_wbatch_destroy(b);
  ferry_wfilter_destroy(flt);
  ferry_store_close(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_append_read_back, setup, teardown),
      cmocka_unit_test_setup_teardown(test_seqs_consecutive, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reappend_is_duplicate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_in_batch_duplicates, setup, teardown),
      cmocka_unit_test_setup_teardown(test_invalid_appends, setup, teardown),
      cmocka_unit_test_setup_teardown(test_customers_isolated, setup, teardown),
      cmocka_unit_test_setup_teardown(test_second_writer_busy, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reader_beside_writer, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_appends, setup, teardown),
      cmocka_unit_test_setup_teardown(test_append_async, setup, teardown),
      cmocka_unit_test_setup_teardown(test_large_chunked_batch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_recovery_after_kill, setup, teardown),
      cmocka_unit_test_setup_teardown(test_kv_basics, setup, teardown),
      cmocka_unit_test_setup_teardown(test_wbatch_guards_log, setup, teardown),
      cmocka_unit_test_setup_teardown(test_indexed_batch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_scan_model, setup, teardown),
      cmocka_unit_test_setup_teardown(test_write_filter, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
