/*
 * bench/projector: how fast the fold is, and whether the cost of one change
 * stays flat as the customer grows.
 *
 * For customers of 10k, 100k and 1M contacts (the demo mapping: contacts
 * with a suburb lookup and a phones collect, plus an address split off each
 * contact with a ref), each in a fresh store and a forked child so peak RSS
 * is per size:
 *   - the initial fold rate (events/s) of the whole log;
 *   - the time to fold and plan one changed contact row, and one changed
 *     phone row (median and p90 of 101 changes);
 *   - peak RSS.
 * Usage: bench_projector [--sizes 10000,100000,1000000] [--mapping FILE]
 * Environment: FOLD_BATCH=N events per fold batch; FOLD_PERF=1 prints what
 * RocksDB counted during the initial fold (its perf context) on stderr;
 * CHANGE_PERF=1 prints RocksDB's counts and timers summed over the single
 * changes (which the timers slow down).
 */
#include <inttypes.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ferry/mapping.h"
#include "ferry/projector.h"
#include "ferry/store.h"
#include "ferry/v1/change.pb-c.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, const ferry_error *err) {
  fprintf(stderr, "bench_projector: %s: %s\n", what, err ? err->msg : "");
  exit(1);
}

/* An arena of packed changes for one append batch. */
typedef struct batch {
  ferry_change_ref refs[10000];
  char ids[10000][48];
  uint8_t *buf;
  size_t used, cap, n;
} batch;

static Ferry__V1__Value *val_str(Ferry__V1__Value *v, const char *s) {
  ferry__v1__value__init(v);
  v->kind_case = FERRY__V1__VALUE__KIND_STRING_VALUE;
  v->string_value = (char *)s;
  return v;
}

static Ferry__V1__Value *val_int(Ferry__V1__Value *v, int64_t i) {
  ferry__v1__value__init(v);
  v->kind_case = FERRY__V1__VALUE__KIND_INT_VALUE;
  v->int_value = i;
  return v;
}

static Ferry__V1__Value *val_bool(Ferry__V1__Value *v, int b) {
  ferry__v1__value__init(v);
  v->kind_case = FERRY__V1__VALUE__KIND_BOOL_VALUE;
  v->bool_value = b;
  return v;
}

static void add(batch *b, const char *table, const char *key, uint64_t version,
                Ferry__V1__Column **cols, size_t ncols) {
  Ferry__V1__Change c = FERRY__V1__CHANGE__INIT;
  snprintf(b->ids[b->n], sizeof b->ids[b->n], "%s/%s/%" PRIu64, table, key, version);
  c.table = (char *)table;
  c.key = (char *)key;
  c.op = FERRY__V1__OP__OP_UPSERT;
  c.version = version;
  c.id = b->ids[b->n];
  c.row = cols;
  c.n_row = ncols;
  size_t need = ferry__v1__change__get_packed_size(&c);
  if (b->used + need > b->cap) {
    fprintf(stderr, "bench_projector: batch arena too small\n");
    exit(1);
  }
  b->refs[b->n].pb_len = ferry__v1__change__pack(&c, b->buf + b->used);
  b->refs[b->n].pb = b->buf + b->used;
  b->refs[b->n].id = b->ids[b->n];
  b->refs[b->n].id_len = strlen(b->ids[b->n]);
  b->used += need;
  b->n++;
}

static void flush(ferry_store *s, batch *b) {
  ferry_append_result r;
  ferry_error err;
  if (b->n && ferry_store_append(s, "bench", b->refs, b->n, &r, &err)) die("append", &err);
  b->n = 0;
  b->used = 0;
}

static void contact(batch *b, long i, uint64_t version) {
  char key[24], first[32], email[64], street[48];
  Ferry__V1__Value v[8];
  Ferry__V1__Column c[8], *pc[8];
  snprintf(key, sizeof key, "%ld", i);
  snprintf(first, sizeof first, "First%ld-%" PRIu64, i, version);
  snprintf(email, sizeof email, " Person%ld@Example.COM ", i);
  snprintf(street, sizeof street, "%ld Long Street Name", i);
  const char *names[] = {"ContactID", "FirstName", "Surname", "Email", "IsArchived", "SuburbID", "Street"};
  val_int(&v[0], i);
  val_str(&v[1], first);
  val_str(&v[2], "Surname");
  val_str(&v[3], email);
  val_bool(&v[4], 0);
  val_int(&v[5], i % 100);
  val_str(&v[6], street);
  for (int k = 0; k < 7; k++) {
    ferry__v1__column__init(&c[k]);
    c[k].name = (char *)names[k];
    c[k].value = &v[k];
    pc[k] = &c[k];
  }
  add(b, "Contacts", key, version, pc, 7);
}

static void phone(batch *b, long i, long parent, uint64_t version) {
  char key[24], number[32];
  Ferry__V1__Value v[4];
  Ferry__V1__Column c[4], *pc[4];
  snprintf(key, sizeof key, "p%ld", i);
  snprintf(number, sizeof number, "(02) 555-%04ld", i % 10000);
  const char *names[] = {"ContactID", "Number", "PhoneType", "Position"};
  val_int(&v[0], parent);
  val_str(&v[1], number);
  val_str(&v[2], version % 2 ? "home" : "mobile");
  val_int(&v[3], (long)version);
  for (int k = 0; k < 4; k++) {
    ferry__v1__column__init(&c[k]);
    c[k].name = (char *)names[k];
    c[k].value = &v[k];
    pc[k] = &c[k];
  }
  add(b, "ContactPhones", key, version, pc, 4);
}

static void suburb(batch *b, long i) {
  char key[24], name[32];
  Ferry__V1__Value v;
  Ferry__V1__Column c, *pc = &c;
  snprintf(key, sizeof key, "%ld", i);
  snprintf(name, sizeof name, "Suburb %ld", i);
  ferry__v1__column__init(&c);
  c.name = "Name";
  c.value = val_str(&v, name);
  add(b, "Suburbs", key, 1, &pc, 1);
}

typedef struct applier {
  ferry_projector *p;
  long n;
} applier;

/* Records a planned call as done, as the applier would after a 2xx: the real
 * record path (applied state, audit, dirty mark) without the HTTP. */
static int record_ok(void *arg, ferry_call **cp) {
  const ferry_call *c = *cp;
  applier *a = arg;
  ferry_error err;
  char id[32];
  snprintf(id, sizeof id, "%ld", ++a->n);
  ferry_call_result r = {FERRY_OUTCOME_OK, 201, id, "POST", c->endpoint, NULL, 1, 0};
  if (c->kind != FERRY_CALL_WAIT && ferry_projector_record(a->p, c, &r, &err)) die("record", &err);
  return 0;
}

/* Brings applied state up to desired, phase by phase like a sync. */
static long apply_all(ferry_projector *p) {
  applier a = {p, 0};
  ferry_error err;
  for (unsigned ph = 0; ph < ferry_projector_phases(p); ph++)
    if (ferry_projector_plan_phase(p, ph, NULL, record_ok, &a, &err)) die("plan", &err);
  if (ferry_projector_sync_wal(p, &err)) die("sync", &err);
  return a.n;
}

static long rss_kib(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int count_call(void *arg, const ferry_call *c) {
  (void)c;
  (*(long *)arg)++;
  return 0;
}

/* What RocksDB did for the single changes of one kind, summed over the
 * trials (its perf context, counts only: no timers on the measured path).
 * It says why a change costs more at 1M entities: the same reads, but some
 * of them miss the block cache and read a table block. */
typedef struct reads {
  double gets, seeks, blocks, skipped;
} reads;

static rocksdb_perfcontext_t *perf;

/* Folds and plans one more change; returns the seconds it took. */
static double one_change(ferry_store *s, ferry_projector *p, batch *b, int phone_row, long i,
                         uint64_t version, reads *r) {
  ferry_error err;
  if (phone_row) phone(b, i, i / 2, version);
  else contact(b, i, version);
  flush(s, b);
  /* CHANGE_PERF=1 adds RocksDB's timers (summed over all trials, printed at
   * the end); they slow the measured path, so the times are then not the
   * benchmark's. */
  static int timed = -1;
  if (timed < 0) timed = getenv("CHANGE_PERF") != NULL;
  rocksdb_set_perf_level(timed ? rocksdb_enable_time_except_for_mutex : rocksdb_enable_count);
  static const int metric[4] = {rocksdb_get_from_memtable_count, rocksdb_seek_on_memtable_count,
                                rocksdb_block_read_count, rocksdb_internal_delete_skipped_count};
  double before[4];
  for (int m = 0; m < 4; m++) before[m] = (double)rocksdb_perfcontext_metric(perf, metric[m]);
  double t0 = now();
  long calls = 0;
  if (ferry_projector_fold(p, NULL, NULL, NULL, &err)) die("fold", &err);
  if (ferry_projector_plan(p, count_call, &calls, &err)) die("plan", &err);
  double t = now() - t0;
  rocksdb_set_perf_level(rocksdb_disable);
  double *sum[4] = {&r->gets, &r->seeks, &r->blocks, &r->skipped};
  for (int m = 0; m < 4; m++) *sum[m] += (double)rocksdb_perfcontext_metric(perf, metric[m]) - before[m];
  if (calls < 1) die("a change planned no call", NULL);
  apply_all(p);
  return t;
}

static int fold_only;

static void run_size(long n, const char *mapping_path) {
  char dir[] = "/tmp/ferry-bench-proj.XXXXXX";
  ferry_store *s = NULL;
  ferry_mapping *m = NULL;
  ferry_projector *p = NULL;
  ferry_error err;
  batch *b = calloc(1, sizeof *b);
  b->cap = 10000 * 512;
  b->buf = malloc(b->cap);
  if (!mkdtemp(dir)) die("mkdtemp", NULL);
  if (ferry_store_open(&s, dir, FERRY_STORE_WRITE, &err)) die("open", &err);
  if (ferry_mapping_load(&m, mapping_path, &err)) die("mapping", &err);
  for (long i = 0; i < 100; i++) suburb(b, i);
  long phones = 0;
  for (long i = 0; i < n; i++) {
    if (b->n >= 9990) flush(s, b);
    contact(b, i, 1);
    if (i % 2 == 0) phone(b, phones++, i, 1); /* every other contact has a phone */
  }
  flush(s, b);
  uint64_t events = 0;
  ferry_store_head_seq(s, "bench", &events, &err);
  long rss_ingest = rss_kib() / 1024;
  ferry_projector_opts o = {NULL, NULL, getenv("FOLD_BATCH") ? (size_t)atol(getenv("FOLD_BATCH")) : 0};
  if (ferry_projector_open(&p, s, m, "bench", &o, false, &err)) die("projector", &err);
  if (getenv("FOLD_PERF")) {
    perf = rocksdb_perfcontext_create();
    rocksdb_set_perf_level(rocksdb_enable_count);
    rocksdb_perfcontext_reset(perf);
  }
  double t0 = now();
  if (ferry_projector_fold(p, NULL, NULL, NULL, &err)) die("fold", &err);
  double fold_s = now() - t0;
  if (getenv("FOLD_PERF")) {
    rocksdb_set_perf_level(rocksdb_disable);
    char *rep = rocksdb_perfcontext_report(perf, 1);
    fprintf(stderr, "%s\n", rep);
    free(rep);
  }
  long rss_fold = rss_kib() / 1024;
  if (fold_only) {
    printf("%9ld entities %9" PRIu64 " events  fold %8.0f events/s (%6.2f s)\n", 2 * n, events,
           events / fold_s, fold_s);
    fflush(stdout);
    goto out;
  }
  t0 = now();
  long applied = apply_all(p);
  double apply_s = now() - t0;
  long rss_apply = rss_kib() / 1024;
  enum { TRIALS = 101 }; /* an odd count: the median is one of them */
  double tc[TRIALS], tp[TRIALS];
  reads rc = {0}, rp = {0};
  if (!perf && !(perf = rocksdb_perfcontext_create())) die("perf context", NULL);
  rocksdb_perfcontext_reset(perf); /* RocksDB counts by default: only the trials' */
  for (int k = 0; k < TRIALS; k++) {
    tc[k] = one_change(s, p, b, 0, (k * 7919L) % n, 2 + k, &rc);
    tp[k] = one_change(s, p, b, 1, (k * 104729L) % phones, 2 + k, &rp);
  }
  if (getenv("CHANGE_PERF")) {
    char *rep = rocksdb_perfcontext_report(perf, 1);
    fprintf(stderr, "%s\n", rep);
    free(rep);
  }
  qsort(tc, TRIALS, sizeof *tc, cmp_d);
  qsort(tp, TRIALS, sizeof *tp, cmp_d);
  printf("%9ld entities %9" PRIu64 " events  fold %8.0f events/s (%6.2f s)  one contact change "
         "%6.2f ms (p90 %6.2f)  one phone change %6.2f ms (p90 %6.2f)  peak RSS %5ld MiB"
         "  (recording %ld applied: %.0f/s)\n",
         2 * n, events, events / fold_s, fold_s, tc[TRIALS / 2] * 1e3, tc[TRIALS * 9 / 10] * 1e3,
         tp[TRIALS / 2] * 1e3, tp[TRIALS * 9 / 10] * 1e3, rss_kib() / 1024, applied,
         applied / apply_s);
  printf("%9s peak RSS after ingest %ld MiB, after fold %ld MiB, after applying %ld MiB\n", "",
         rss_ingest, rss_fold, rss_apply);
  printf("%9s per change (RocksDB): contact %.1f point reads, %.1f seeks, %.1f table blocks read, "
         "%.0f deletion markers stepped over; phone %.1f, %.1f, %.1f, %.0f\n", "",
         rc.gets / TRIALS, rc.seeks / TRIALS, rc.blocks / TRIALS, rc.skipped / TRIALS,
         rp.gets / TRIALS, rp.seeks / TRIALS, rp.blocks / TRIALS, rp.skipped / TRIALS);
  fflush(stdout);
out:
  ferry_projector_close(p);
  ferry_mapping_free(m);
  ferry_store_close(s);
  free(b->buf);
  free(b);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(int argc, char **argv) {
  const char *sizes = "10000,100000,1000000";
  const char *mapping = "examples/mapping.yaml";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--fold-only") == 0) fold_only = 1;
    else if (strcmp(argv[i], "--sizes") == 0 && i + 1 < argc) sizes = argv[++i];
    else if (strcmp(argv[i], "--mapping") == 0 && i + 1 < argc) mapping = argv[++i];
    else {
      fprintf(stderr, "usage: bench_projector [--sizes N,N,..] [--mapping FILE] [--fold-only]\n");
      return 2;
    }
  }
  printf("bench_projector: mapping %s (contacts: lookup + collect; addresses: split + ref)\n", mapping);
  printf("entities = contacts + addresses; events = contacts + phones (1 per 2 contacts) + 100 suburbs\n");
  char *list = strdup(sizes);
  for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
    long n = atol(tok) / 2; /* each contact yields a contact and an address */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      run_size(n, mapping);
      if (perf) rocksdb_perfcontext_destroy(perf);
      _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
  }
  free(list);
  return 0;
}
