/*
 * Ingest benchmark: how fast the store appends durable changes, against the
 * ceiling RocksDB itself reaches on this machine.
 *
 * It packs N ferry.v1.Change messages of about ROW bytes each (not timed),
 * appends them to one customer of a fresh store in batches of B (each append
 * returns only once its WAL sync is done), and prints changes/s and MB/s of
 * packed changes. Then it runs RocksDB's own db_bench, fillbatch with
 * sync=1, batches of 1000 and 200-byte values, the same N, and prints the
 * ratio of the two rates. Our append does more per change than fillbatch (a
 * dedup lookup, an event and a dedup entry, a head record per batch), so the
 * goal is at least half of db_bench's rate.
 *
 * Machines running other work make single timings noisy, so it alternates
 * the two R times (default 3) and compares the medians.
 *
 *   bench_ingest [-n N] [-b B] [-r ROW] [-t THREADS] [--rounds R]
 *                [--db-bench PATH | --no-db-bench]
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ferry/store.h"
#include "ferry/v1/change.pb-c.h"

typedef struct opts {
  size_t n, batch, row, threads, rounds;
  const char *db_bench; /* NULL: skip it */
} opts;

typedef struct corpus {
  ferry_change_ref *refs;
  uint8_t *pb;  /* every packed change, back to back */
  char *ids;    /* every id, back to back */
  size_t bytes; /* of packed changes */
} corpus;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of the whole process (all threads, RocksDB's included). */
static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int usage(void) {
  fprintf(stderr, "usage: bench_ingest [-n N] [-b BATCH] [-r ROW_BYTES] [-t THREADS] "
                  "[--rounds R] [--db-bench PATH | --no-db-bench]\n");
  return 2;
}

static int parse_opts(int argc, char **argv, opts *o) {
  *o = (opts){1000000, 1000, 200, 1, 3, "/usr/bin/db_bench"};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--no-db-bench") == 0)
      o->db_bench = NULL;
    else if (strcmp(a, "--db-bench") == 0 && v)
      o->db_bench = argv[++i];
    else if (strcmp(a, "-n") == 0 && v)
      o->n = strtoull(argv[++i], NULL, 10);
    else if (strcmp(a, "-b") == 0 && v)
      o->batch = strtoull(argv[++i], NULL, 10);
    else if (strcmp(a, "-r") == 0 && v)
      o->row = strtoull(argv[++i], NULL, 10);
    else if (strcmp(a, "-t") == 0 && v)
      o->threads = strtoull(argv[++i], NULL, 10);
    else if (strcmp(a, "--rounds") == 0 && v)
      o->rounds = strtoull(argv[++i], NULL, 10);
    else
      return usage();
  }
  if (!o->n || !o->batch || o->row < 64 || o->row > 1 << 20 || !o->threads || o->threads > 64 ||
      !o->rounds || o->rounds > 16)
    return usage();
  return 0;
}

/* ---- the changes ---------------------------------------------------------- */

/* A contact row; Notes pads the packed change to about row bytes. */
static size_t pack_one(size_t i, size_t row, char *id, size_t idcap, uint8_t *out, size_t cap,
                       unsigned *seed) {
  char key[24], email[48], notes[1 << 20];
  Ferry__V1__Change c = FERRY__V1__CHANGE__INIT;
  Ferry__V1__Column cols[4], *pcols[4];
  Ferry__V1__Value vals[4];
  const char *names[4] = {"ContactID", "FirstName", "Email", "Notes"};
  snprintf(key, sizeof key, "%zu", i);
  snprintf(email, sizeof email, "contact%zu@example.com", i);
  snprintf(id, idcap, "Contacts/%s/1/upsert", key);
  for (int k = 0; k < 4; k++) {
    ferry__v1__column__init(&cols[k]);
    ferry__v1__value__init(&vals[k]);
    cols[k].name = (char *)names[k];
    cols[k].value = &vals[k];
    pcols[k] = &cols[k];
    vals[k].kind_case = FERRY__V1__VALUE__KIND_STRING_VALUE;
  }
  vals[0].kind_case = FERRY__V1__VALUE__KIND_INT_VALUE;
  vals[0].int_value = (int64_t)i;
  vals[1].string_value = "Ann";
  vals[2].string_value = email;
  vals[3].string_value = notes;
  notes[0] = '\0';
  c.table = "Contacts";
  c.key = key;
  c.op = FERRY__V1__OP__OP_UPSERT;
  c.version = 1;
  c.id = id;
  c.n_row = 4;
  c.row = pcols;
  size_t base = ferry__v1__change__get_packed_size(&c);
  size_t pad = row > base + 2 ? row - base - 2 : 0; /* 2: the longer length varint */
  for (size_t k = 0; k < pad; k++)
    notes[k] = (char)('a' + rand_r(seed) % 26);
  notes[pad] = '\0';
  size_t n = ferry__v1__change__get_packed_size(&c);
  if (n > cap) return 0;
  return ferry__v1__change__pack(&c, out);
}

static int corpus_make(corpus *cp, const opts *o) {
  enum { ID_CAP = 64 };
  size_t cap = o->row + 64;
  unsigned seed = 42;
  memset(cp, 0, sizeof *cp);
  cp->refs = calloc(o->n, sizeof *cp->refs);
  cp->pb = malloc(o->n * cap);
  cp->ids = malloc(o->n * ID_CAP);
  if (!cp->refs || !cp->pb || !cp->ids) return -1;
  uint8_t *p = cp->pb;
  for (size_t i = 0; i < o->n; i++) {
    char *id = cp->ids + i * ID_CAP;
    size_t len = pack_one(i, o->row, id, ID_CAP, p, cap, &seed);
    if (!len) return -1;
    cp->refs[i] = (ferry_change_ref){id, strlen(id), p, len};
    cp->bytes += len;
    p += len;
  }
  return 0;
}

static void corpus_free(corpus *cp) {
  free(cp->refs);
  free(cp->pb);
  free(cp->ids);
}

/* ---- our run --------------------------------------------------------------- */

typedef struct run {
  ferry_store *s;
  const corpus *cp;
  const opts *o;
  pthread_mutex_t mu;
  size_t next; /* the next batch's first change */
  ferry_status st;
  ferry_error err;
} run;

static void *appender(void *arg) {
  run *r = arg;
  for (;;) {
    pthread_mutex_lock(&r->mu);
    size_t off = r->next, n = r->o->n - off < r->o->batch ? r->o->n - off : r->o->batch;
    r->next += n;
    bool stop = n == 0 || r->st;
    pthread_mutex_unlock(&r->mu);
    if (stop) return NULL;
    ferry_append_result res;
    ferry_error err;
    ferry_status st = ferry_store_append(r->s, "bench", r->cp->refs + off, n, &res, &err);
    if (st || res.appended != n) {
      pthread_mutex_lock(&r->mu);
      r->st = st ? st : FERRY_EINTERNAL;
      r->err = err;
      pthread_mutex_unlock(&r->mu);
    }
  }
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  remove(path);
  return 0;
}

/* Appends the corpus; returns changes per second, or a negative number. */
static double run_ours(const corpus *cp, const opts *o, const char *dir) {
  run r = {.cp = cp, .o = o, .mu = PTHREAD_MUTEX_INITIALIZER};
  pthread_t t[64];
  ferry_error err;
  if (ferry_store_open(&r.s, dir, FERRY_STORE_WRITE, &err)) {
    fprintf(stderr, "bench_ingest: %s\n", err.msg);
    return -1;
  }
  double t0 = now_s(), c0 = cpu_s();
  for (size_t i = 0; i < o->threads; i++)
    pthread_create(&t[i], NULL, appender, &r);
  for (size_t i = 0; i < o->threads; i++)
    pthread_join(t[i], NULL);
  double secs = now_s() - t0, cpu = cpu_s() - c0;
  ferry_store_stats st;
  ferry_store_stats_get(r.s, &st);
  ferry_store_close(r.s);
  if (r.st) {
    fprintf(stderr, "bench_ingest: append failed: %s\n", r.err.msg);
    return -1;
  }
  printf("ferry:    %zu changes (%.1f MB packed) in %.2f s: %.0f changes/s, %.1f MB/s\n", o->n,
         (double)cp->bytes / 1e6, secs, (double)o->n / secs, (double)cp->bytes / 1e6 / secs);
  printf("          %" PRIu64 " appends, %" PRIu64 " synced writes, %" PRIu64
         " chunks, %.2f CPU s (all threads)\n",
         st.appends, st.syncs, st.chunks, cpu);
  return (double)o->n / secs;
}

/* ---- db_bench -------------------------------------------------------------- */

/* Runs db_bench fillbatch and returns its ops/sec, or a negative number. */
static double run_db_bench(const opts *o, const char *dir) {
  char num[32], db[4200];
  int fds[2];
  snprintf(num, sizeof num, "--num=%zu", o->n);
  snprintf(db, sizeof db, "--db=%s", dir);
  if (pipe(fds) != 0) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, STDERR_FILENO); /* its progress lines */
    close(fds[0]);
    close(fds[1]);
    execl(o->db_bench, o->db_bench, "--benchmarks=fillbatch", "--sync=1", "--batch_size=1000", num,
          "--value_size=200", db, (char *)NULL);
    fprintf(stderr, "bench_ingest: cannot run %s: %s\n", o->db_bench, strerror(errno));
    _exit(127);
  }
  close(fds[1]);
  FILE *f = fdopen(fds[0], "r");
  char line[512];
  double ops = -1;
  while (f && fgets(line, sizeof line, f)) {
    /* fillbatch    :       1.291 micros/op 774843 ops/sec 1.291 seconds ... */
    double us, rate;
    if (strncmp(line, "fillbatch", 9) == 0 &&
        sscanf(strchr(line, ':') + 1, "%lf micros/op %lf ops/sec", &us, &rate) == 2) {
      ops = rate;
      printf("db_bench: %s", line);
    }
  }
  if (f)
    fclose(f);
  else
    close(fds[0]);
  int status;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? ops : -1;
}

static int make_tmp(char *out, size_t cap, const char *what) {
  const char *tmp = getenv("TMPDIR");
  snprintf(out, cap, "%s/ferry-bench-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", what);
  return mkdtemp(out) ? 0 : -1;
}

/* One fresh directory, one run, the directory removed; a rate or negative. */
static double run_fresh(const corpus *cp, const opts *o, bool ours) {
  char dir[4096];
  if (make_tmp(dir, sizeof dir, ours ? "ferry" : "db_bench")) return -1;
  double rate = ours ? run_ours(cp, o, dir) : run_db_bench(o, dir);
  nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return rate;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, size_t n) {
  qsort(v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv) {
  opts o;
  corpus cp;
  double ours[16], theirs[16];
  int rc = 1;
  if (parse_opts(argc, argv, &o)) return 2;
  if (corpus_make(&cp, &o)) {
    fprintf(stderr, "bench_ingest: out of memory\n");
    goto done;
  }
  printf("%zu changes of %.0f bytes (packed ferry.v1.Change), batches of %zu, %zu thread(s)\n", o.n,
         (double)cp.bytes / (double)o.n, o.batch, o.threads);
  if (o.db_bench && o.batch != 1000)
    printf("note: db_bench fillbatch always writes batches of 1000\n");
  /* Alternate the two, so that a noisy neighbour hurts both alike. */
  for (size_t r = 0; r < o.rounds; r++) {
    if ((ours[r] = run_fresh(&cp, &o, true)) < 0) goto done;
    if (o.db_bench && (theirs[r] = run_fresh(&cp, &o, false)) <= 0) {
      fprintf(stderr, "bench_ingest: db_bench failed\n");
      goto done;
    }
    if (o.db_bench) printf("round %zu: ratio %.2f\n", r + 1, ours[r] / theirs[r]);
  }
  if (o.db_bench) {
    double mo = median(ours, o.rounds), mt = median(theirs, o.rounds);
    printf("median of %zu: ferry %.0f changes/s, db_bench %.0f ops/s\n", o.rounds, mo, mt);
    printf("ratio ferry/db_bench: %.2f (goal >= 0.50)\n", mo / mt);
  }
  rc = 0;
done:
  corpus_free(&cp);
  return rc;
}
