/*
 * bench/apply: the initial migration of a customer to a fresh cloud, the
 * applier's whole path (plan, create intent, POST, record), measured next to
 * wrk hitting the same ferry-cloudsim with GETs of one record at the same
 * concurrency, so the figure says how much of the server's capacity ferry
 * gets, not how fast this machine is.
 *
 * Reports calls/s, wrk's requests/s and the ratio, calls per entity (the
 * cloud's own request count over the entities: must be exactly 1) and new
 * connections per 1,000 calls. Goals: >= 50% of wrk, exactly 1, <= 1.
 *
 * Usage: bench_apply [--entities N] [--concurrency C] [--wrk-seconds S]
 *                    [--cloudsim PATH] [--latency-ms MS]
 * (cloudsim defaults to ./ferry-cloudsim beside this program; wrk from PATH)
 */
#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ferry/change.h"
#include "ferry/cloud.h"
#include "ferry/mapping.h"
#include "ferry/projector.h"
#include "ferry/store.h"

typedef struct bench_opts {
  unsigned entities, concurrency, wrk_seconds, latency_ms;
  char cloudsim[1024];
} bench_opts;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds this process has used (*sys: of them in the kernel). */
static double cpu_s(double *sys) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  *sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + *sys;
}

static void die(const char *what, const ferry_error *err) {
  fprintf(stderr, "bench_apply: %s%s%s\n", what, err ? ": " : "", err ? err->msg : "");
  exit(1);
}

static const char MAPPING[] = "version: 1\n"
                              "entities:\n"
                              "  contact:\n"
                              "    endpoint: /contacts\n"
                              "    source: Contacts\n"
                              "    fields:\n"
                              "      first_name: FirstName\n"
                              "      last_name: Surname\n"
                              "      email: {column: Email, transform: [trim, lower]}\n"
                              "      display_name: {template: \"{FirstName} {Surname}\"}\n";

/* Appends rows [from, to) to the customer's log as one NDJSON batch. */
static void ingest(ferry_store *s, unsigned from, unsigned to) {
  size_t cap = (size_t)(to - from) * 256 + 1, len = 0;
  char *buf = malloc(cap);
  ferry_batch *b = NULL;
  ferry_error err;
  ferry_append_result res;
  if (!buf) die("out of memory", NULL);
  for (unsigned i = from; i < to; i++)
    len += (size_t)snprintf(buf + len, cap - len,
                            "{\"table\":\"Contacts\",\"key\":%u,\"op\":\"upsert\",\"version\":1,"
                            "\"row\":{\"ContactID\":%u,\"FirstName\":\"Name%u\",\"Surname\":"
                            "\"Surname%u\",\"Email\":\" Person%u@Example.COM \"}}\n",
                            i, i, i, i, i);
  ferry_decode_opts o = {"acme", false, 0};
  if (ferry_batch_decode(FERRY_FORMAT_NDJSON, buf, len, &o, &b, &err)) die("decode", &err);
  if (ferry_store_append(s, "acme", ferry_batch_changes(b), ferry_batch_count(b), &res, &err))
    die("append", &err);
  ferry_batch_free(b);
  free(buf);
}

/* Starts ferry-cloudsim on a free port; returns its pid, *port the port. */
static pid_t cloudsim_start(const bench_opts *o, unsigned *port) {
  int fds[2];
  char lat[16];
  snprintf(lat, sizeof lat, "%u", o->latency_ms);
  if (pipe(fds)) die("pipe", NULL);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    execl(o->cloudsim, o->cloudsim, "--listen", "127.0.0.1:0", "--latency-ms", lat, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  FILE *f = fdopen(fds[0], "r");
  char line[256] = "";
  if (!f || !fgets(line, sizeof line, f) || sscanf(line, "listening on 127.0.0.1:%u", port) != 1)
    die("ferry-cloudsim did not start (see --cloudsim)", NULL);
  fclose(f);
  return pid;
}

static size_t to_json(char *p, size_t size, size_t n, void *arg) {
  json_t *acc = arg; /* a JSON string used as the buffer */
  size_t len = json_string_length(acc);
  char *joined = malloc(len + size * n);
  if (!joined) return 0;
  memcpy(joined, json_string_value(acc), len);
  memcpy(joined + len, p, size * n);
  json_string_setn_nocheck(acc, joined, len + size * n);
  free(joined);
  return size * n;
}

/* GET /_stats: blocking, outside the loop (the bench is over by then). */
static json_t *cloud_stats(unsigned port) {
  char url[64];
  json_t *acc = json_string("");
  CURL *e = curl_easy_init();
  snprintf(url, sizeof url, "http://127.0.0.1:%u/_stats", port);
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, to_json);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, acc);
  if (curl_easy_perform(e) != CURLE_OK) die("GET /_stats failed", NULL);
  curl_easy_cleanup(e);
  json_t *v = json_loads(json_string_value(acc), 0, NULL);
  json_decref(acc);
  if (!v) die("/_stats is not JSON", NULL);
  return v;
}

/* CPU seconds process pid has used so far (from /proc), or -1. */
static double proc_cpu_s(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
  unsigned long ut = 0, st = 0;
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* wrk POSTing creates like ferry's (a body of the same shape, a fresh
 * Idempotency-Key each) into another account of the same server. */
static const char WRK_POST[] =
    "local n = 0\n"
    "request = function()\n"
    "  n = n + 1\n"
    "  local body = '{\"first_name\":\"Name' .. n .. '\",\"last_name\":\"Surname' .. n ..\n"
    "    '\",\"email\":\"person' .. n .. '@example.com\",\"display_name\":\"Name' .. n ..\n"
    "    ' Surname' .. n .. '\",\"legacy_key\":\"contact/' .. n .. '\"}'\n"
    "  return wrk.format('POST', '/wrk' .. tostring(math.random(1e9)) .. '/contacts',\n"
    "    {['Content-Type'] = 'application/json',\n"
    "     ['Idempotency-Key'] = 'k' .. n .. '-' .. tostring(math.random(1e9))}, body)\n"
    "end\n";

/* wrk's Requests/sec at the same concurrency, or -1: GETs of one record, or
 * (script) the POSTs above. */
static double run_wrk(const bench_opts *o, unsigned port, const char *script) {
  char cmd[1024], line[512];
  double rps = -1;
  if (script)
    snprintf(cmd, sizeof cmd, "wrk -t2 -c%u -d%us -s %s http://127.0.0.1:%u/ 2>&1", o->concurrency,
             o->wrk_seconds, script, port);
  else
    snprintf(cmd, sizeof cmd, "wrk -t2 -c%u -d%us http://127.0.0.1:%u/acme/contacts/1 2>&1",
             o->concurrency, o->wrk_seconds, port);
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  while (fgets(line, sizeof line, p))
    sscanf(line, "Requests/sec: %lf", &rps);
  pclose(p);
  return rps;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

static void parse_args(int argc, char **argv, bench_opts *o) {
  o->entities = 50000;
  o->concurrency = 16;
  o->wrk_seconds = 10;
  o->latency_ms = 0;
  const char *slash = strrchr(argv[0], '/');
  snprintf(o->cloudsim, sizeof o->cloudsim, "%.*sferry-cloudsim",
           slash ? (int)(slash - argv[0] + 1) : 0, argv[0]);
  for (int i = 1; i + 1 < argc; i += 2) {
    unsigned long v = strtoul(argv[i + 1], NULL, 10);
    if (strcmp(argv[i], "--entities") == 0)
      o->entities = (unsigned)v;
    else if (strcmp(argv[i], "--concurrency") == 0)
      o->concurrency = (unsigned)v;
    else if (strcmp(argv[i], "--wrk-seconds") == 0)
      o->wrk_seconds = (unsigned)v;
    else if (strcmp(argv[i], "--latency-ms") == 0)
      o->latency_ms = (unsigned)v;
    else if (strcmp(argv[i], "--cloudsim") == 0)
      snprintf(o->cloudsim, sizeof o->cloudsim, "%s", argv[i + 1]);
    else
      die("usage: bench_apply [--entities N] [--concurrency C] [--wrk-seconds S] "
          "[--cloudsim PATH] [--latency-ms MS]",
          NULL);
  }
  if (!o->entities || !o->concurrency) die("--entities and --concurrency must be > 0", NULL);
}

/* Ingests and folds the customer; returns the fold's seconds. */
static double prepare(ferry_store *s, ferry_projector *p, unsigned n) {
  ferry_error err;
  for (unsigned i = 1; i <= n; i += 10000)
    ingest(s, i, i + 10000 <= n + 1 ? i + 10000 : n + 1);
  double t = now();
  if (ferry_projector_fold(p, NULL, NULL, NULL, &err)) die("fold", &err);
  return now() - t;
}

int main(int argc, char **argv) {
  bench_opts o;
  char dir[] = "/tmp/ferry-bench-apply-XXXXXX", path[256], url[64];
  ferry_store *store = NULL;
  ferry_mapping *map = NULL;
  ferry_projector *proj = NULL;
  ferry_cloud *cloud = NULL;
  ferry_error err;
  unsigned port = 0;
  parse_args(argc, argv, &o);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (!mkdtemp(dir)) die("mkdtemp", NULL);
  pid_t sim = cloudsim_start(&o, &port);
  snprintf(path, sizeof path, "%s/data", dir);
  if (ferry_store_open(&store, path, FERRY_STORE_WRITE, &err)) die("store", &err);
  if (ferry_mapping_load_buffer(&map, "bench-mapping.yaml", MAPPING, strlen(MAPPING), &err))
    die("mapping", &err);
  ferry_projector_opts popts = {0};
  if (ferry_projector_open(&proj, store, map, "acme", &popts, false, &err)) die("projector", &err);
  double fold_s = prepare(store, proj, o.entities);

  struct event_base *base = event_base_new();
  ferry_cloud_opts co;
  ferry_cloud_opts_init(&co);
  snprintf(url, sizeof url, "http://127.0.0.1:%u/acme", port);
  co.base_url = url;
  co.concurrency = (int)o.concurrency;
  if (ferry_cloud_create(&cloud, base, &co, &err)) die("cloud client", &err);
  ferry_sync_report rep;
  double sys0 = 0, sys1 = 0;
  double t = now(), cpu = cpu_s(&sys0), sim_cpu = proc_cpu_s(sim);
  if (ferry_sync_run(base, "acme", proj, cloud, NULL, &rep, &err)) die("sync", &err);
  double apply_s = now() - t;
  cpu = cpu_s(&sys1) - cpu;
  sim_cpu = sim_cpu < 0 ? -1 : proc_cpu_s(sim) - sim_cpu;

  json_t *st = cloud_stats(port);
  json_int_t served = json_integer_value(json_object_get(json_object_get(st, "requests"), "total"));
  json_int_t records = json_integer_value(json_object_get(json_object_get(st, "records"), "total"));
  json_decref(st);
  double rps = run_wrk(&o, port, NULL), post_rps = -1;
  char script[300];
  snprintf(script, sizeof script, "%s/post.lua", dir);
  FILE *sf = fopen(script, "w");
  if (sf && fputs(WRK_POST, sf) >= 0 && fclose(sf) == 0) post_rps = run_wrk(&o, port, script);
  double calls_s = (double)rep.calls / apply_s;

  printf("entities            %u (fold %.2f s, %.0f events/s)\n", o.entities, fold_s,
         o.entities / fold_s);
  printf("apply               %" PRIu64 " calls in %.2f s: %.0f calls/s (concurrency %u)\n",
         rep.calls, apply_s, calls_s, o.concurrency);
  printf("ferry's CPU         %.2f s (%.0f%% of the apply's time, %.0f us per call, %.0f us of it"
         " in the kernel)\n", cpu, 100 * cpu / apply_s, 1e6 * cpu / (double)(rep.calls ? rep.calls : 1),
         1e6 * (sys1 - sys0) / (double)(rep.calls ? rep.calls : 1));
  printf("cloudsim's CPU      %.2f s (%.0f%% of the apply's time, %.0f us per call)\n", sim_cpu,
         100 * sim_cpu / apply_s, 1e6 * sim_cpu / (double)(rep.calls ? rep.calls : 1));
  printf("wrk GET one record  %.0f requests/s (-c%u, %u s)\n", rps, o.concurrency, o.wrk_seconds);
  printf("wrk POST creates    %.0f requests/s (-c%u, %u s, the same body shape as ferry's)\n",
         post_rps, o.concurrency, o.wrk_seconds);
  printf("ratio               %.0f%% of wrk's GETs (goal >= 50%%), %.0f%% of wrk's POSTs\n",
         rps > 0 ? 100 * calls_s / rps : 0, post_rps > 0 ? 100 * calls_s / post_rps : 0);
  printf("calls per entity    %.4f (cloud served %lld requests, holds %lld records; goal 1)\n",
         (double)served / o.entities, (long long)served, (long long)records);
  printf("connections         %" PRIu64 " opened: %.3f per 1,000 calls (goal <= 1)\n",
         rep.cloud.connects,
         1000.0 * (double)rep.cloud.connects / (double)(rep.calls ? rep.calls : 1));
  printf("retries             %" PRIu64 ", failed %" PRIu64 "\n", rep.cloud.retries, rep.failed);

  ferry_cloud_destroy(cloud);
  event_base_free(base);
  ferry_projector_close(proj);
  ferry_mapping_free(map);
  ferry_store_close(store);
  kill(sim, SIGTERM);
  waitpid(sim, NULL, 0);
  nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  curl_global_cleanup();
  return served == (json_int_t)o.entities && records == (json_int_t)o.entities ? 0 : 1;
}
