/*
 * bench/service: ferryd end to end, on loopback.
 *
 * The bench is both sides of ferryd: the legacy producer (an evhttp client
 * POSTing batches) and the cloud (a minimal evhttp server on its own thread
 * that answers creates with an id). Holding both ends lets it time one
 * change from the POST leaving the producer to its create arriving at the
 * cloud on one clock (CLOCK_MONOTONIC), without parsing logs.
 *
 *   1. latency: RATE changes a second for SECONDS, one change per POST, each
 *      a new contact of one of CUSTOMERS customers (round robin), over 32
 *      keep-alive connections. For every change: POST sent -> the cloud
 *      receives its create (p50, p99, max), and POST sent -> 200 (durable).
 *   2. ingest throughput: CONNS connections each POSTing batches of BATCH
 *      changes back to back for TSECONDS, spread over the customers; the rate
 *      of changes acknowledged as appended. The rows are of a table the
 *      mapping does not use, so runs fold them (mirror writes) but send no
 *      cloud call: what is measured is ingest, with the projection keeping up.
 *
 * Usage: bench_service PATH/TO/ferryd [--customers 100] [--rate 1000]
 *        [--seconds 10] [--conns 64] [--batch 100] [--tseconds 10] [--keep]
 *        [--max-runs N (ferryd's)]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LAT_CONNS 32
#define TOKEN "bench-admin-token"

typedef struct opts {
  const char *ferryd;
  const char *max_runs; /* passed to ferryd's --max-runs, or NULL */
  int customers, rate, seconds, conns, batch, tseconds;
  bool keep;
} opts;

static opts O = {NULL, NULL, 100, 1000, 10, 64, 100, 10, false};

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *what) {
  fprintf(stderr, "bench_service: %s%s%s\n", what, errno ? ": " : "", errno ? strerror(errno) : "");
  exit(1);
}

/* ------------------------------------------------------------- the cloud --- */

typedef struct cloud {
  struct event_base *base;
  struct evhttp *http;
  int port;
  pthread_t thread;
  int64_t *arrive; /* by change key: when its create arrived (0: not yet) */
  size_t nkeys;
  atomic_uint_fast64_t arrived, requests;
  uint64_t next_id;
} cloud;

static cloud CL;

/* POST /bNNN/contacts {"legacy_key":"contact/K",...} -> 201 {"id":N} */
static void cloud_request(struct evhttp_request *req, void *arg) {
  cloud *c = arg;
  struct evbuffer *out = evbuffer_new();
  atomic_fetch_add(&c->requests, 1);
  if (evhttp_request_get_command(req) == EVHTTP_REQ_POST) {
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    char *body = (char *)evbuffer_pullup(in, -1);
    char *k = body ? memmem(body, len, "\"contact/", 9) : NULL;
    if (k) {
      unsigned long key = strtoul(k + 9, NULL, 10);
      if (key < c->nkeys && !c->arrive[key]) {
        c->arrive[key] = now_us();
        atomic_fetch_add_explicit(&c->arrived, 1, memory_order_release);
      }
    }
    evbuffer_add_printf(out, "{\"id\":%" PRIu64 "}", ++c->next_id);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, 201, "Created", out);
  } else if (evhttp_request_get_command(req) == EVHTTP_REQ_GET) {
    evbuffer_add_printf(out, "[]");
    evhttp_send_reply(req, 200, "OK", out);
  } else {
    evbuffer_add_printf(out, "{}");
    evhttp_send_reply(req, 200, "OK", out);
  }
  evbuffer_free(out);
}

static void *cloud_main(void *arg) {
  cloud *c = arg;
  event_base_dispatch(c->base);
  return NULL;
}

static void cloud_start(size_t nkeys) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  CL.nkeys = nkeys;
  if (!(CL.arrive = calloc(nkeys, sizeof *CL.arrive))) die("out of memory");
  if (!(CL.base = event_base_new()) || !(CL.http = evhttp_new(CL.base))) die("cloud: libevent");
  evhttp_set_gencb(CL.http, cloud_request, &CL);
  evhttp_set_allowed_methods(CL.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PATCH |
                                          EVHTTP_REQ_DELETE);
  struct evhttp_bound_socket *b = evhttp_bind_socket_with_handle(CL.http, "127.0.0.1", 0);
  if (!b || getsockname(evhttp_bound_socket_get_fd(b), (struct sockaddr *)&ss, &sl) != 0)
    die("cloud: cannot listen");
  CL.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (pthread_create(&CL.thread, NULL, cloud_main, &CL) != 0) die("cloud: thread");
}

static void cloud_stop(void) {
  event_base_loopbreak(CL.base);
  pthread_join(CL.thread, NULL);
  evhttp_free(CL.http);
  event_base_free(CL.base);
  free(CL.arrive);
}

/* ---------------------------------------------------------------- ferryd --- */

static char dir[64];
static pid_t ferryd_pid;
static int ferryd_port;

static void write_file(const char *name, const char *text) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  if (!f || fputs(text, f) < 0 || fclose(f) != 0) die(path);
}

static void write_setup(void) {
  char cfg[1024];
  write_file("mapping.yaml", "version: 1\nentities:\n  contact:\n    endpoint: /contacts\n"
                             "    source: Contacts\n    fields:\n      first_name: FirstName\n"
                             "      email: {column: Email, transform: [trim, lower]}\n");
  snprintf(
      cfg, sizeof cfg,
      "mapping: mapping.yaml\ndata: data\ncloud:\n  base_url: \"http://127.0.0.1:%d/{customer}\"\n"
      "  concurrency: 8\nservice:\n  listen: 127.0.0.1:0\n  admin_token_env: BENCH_ADMIN\n",
      CL.port);
  write_file("ferryd.yaml", cfg);
}

/* Starts ferryd and reads its "listening on" line. */
static void ferryd_start(void) {
  int fds[2];
  char cfg[128], log[128];
  snprintf(cfg, sizeof cfg, "%s/ferryd.yaml", dir);
  snprintf(log, sizeof log, "%s/ferryd.log", dir);
  if (pipe(fds) != 0) die("pipe");
  if ((ferryd_pid = fork()) == 0) {
    dup2(fds[1], 1);
    freopen(log, "w", stderr);
    close(fds[0]);
    setenv("BENCH_ADMIN", TOKEN, 1);
    if (O.max_runs)
      execl(O.ferryd, O.ferryd, "--config", cfg, "--max-runs", O.max_runs, (char *)NULL);
    else
      execl(O.ferryd, O.ferryd, "--config", cfg, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  FILE *f = fdopen(fds[0], "r");
  char line[256];
  if (!f || !fgets(line, sizeof line, f) ||
      sscanf(line, "listening on 127.0.0.1:%d", &ferryd_port) != 1)
    die("ferryd did not start (see its log in the bench directory; --keep keeps it)");
  fclose(f);
}

static int ferryd_stop(void) {
  int status = 0;
  kill(ferryd_pid, SIGTERM);
  waitpid(ferryd_pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* --------------------------------------------------------------- producer --- */

typedef struct producer {
  struct event_base *base;
  struct evhttp_connection **conns;
  int nconns, next_conn;
  /* latency */
  int64_t *sent, *acked;
  uint64_t nsent, nacked, failed, target;
  int64_t start_us;
  struct event *tick;
  /* throughput */
  bool tput;
  int64_t end_us;
  uint64_t appended, requests, tput_failed;
  uint64_t next_key, next_cust;
  int busy;
} producer;

static producer P;

static void connect_all(int n) {
  P.nconns = n;
  if (!(P.conns = calloc((size_t)n, sizeof *P.conns))) die("out of memory");
  for (int i = 0; i < n; i++)
    if (!(P.conns[i] =
              evhttp_connection_base_new(P.base, NULL, "127.0.0.1", (ev_uint16_t)ferryd_port)))
      die("evhttp_connection_base_new");
}

static void disconnect_all(void) {
  for (int i = 0; i < P.nconns; i++)
    evhttp_connection_free(P.conns[i]);
  free(P.conns);
  P.conns = NULL;
}

static bool post(struct evhttp_connection *conn, uint64_t cust, struct evbuffer *body,
                 void (*cb)(struct evhttp_request *, void *), void *arg) {
  char uri[96];
  struct evhttp_request *req = evhttp_request_new(cb, arg);
  if (!req) return false;
  struct evkeyvalq *h = evhttp_request_get_output_headers(req);
  evhttp_add_header(h, "Host", "127.0.0.1");
  evhttp_add_header(h, "Content-Type", "application/x-ndjson");
  evhttp_add_header(h, "Authorization", "Bearer " TOKEN);
  evbuffer_add_buffer(evhttp_request_get_output_buffer(req), body);
  snprintf(uri, sizeof uri, "/v1/customers/b%03" PRIu64 "/changes", cust);
  return evhttp_make_request(conn, req, EVHTTP_REQ_POST, uri) == 0;
}

/* ---- phase 1: latency ---- */

static void lat_done(struct evhttp_request *req, void *arg) {
  uint64_t key = (uint64_t)(uintptr_t)arg;
  if (req && evhttp_request_get_response_code(req) == 200)
    P.acked[key] = now_us();
  else
    P.failed++;
  P.nacked++;
}

static void lat_send(uint64_t key) {
  struct evbuffer *b = evbuffer_new();
  evbuffer_add_printf(b,
                      "{\"table\":\"Contacts\",\"key\":%" PRIu64 ",\"op\":\"upsert\",\"version\":1,"
                      "\"row\":{\"ContactID\":%" PRIu64 ",\"FirstName\":\"Name%" PRIu64
                      "\",\"Email\":\" P%" PRIu64 "@Example.COM \"}}\n",
                      key, key, key, key);
  P.sent[key] = now_us();
  if (!post(P.conns[P.next_conn++ % P.nconns], key % (uint64_t)O.customers, b, lat_done,
            (void *)(uintptr_t)key))
    P.failed++;
  evbuffer_free(b);
}

/* Every millisecond: send what the rate says is due by now. */
static void lat_tick(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what, (void)arg;
  uint64_t due = (uint64_t)((double)(now_us() - P.start_us) * O.rate / 1e6);
  if (due > P.target) due = P.target;
  while (P.nsent < due)
    lat_send(++P.nsent); /* keys 1..target */
  if (P.nsent >= P.target) {
    event_del(P.tick);
    if (P.nacked >= P.nsent) event_base_loopbreak(P.base);
  }
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static void report(const char *what, int64_t *v, size_t n, uint64_t expected) {
  if (n == 0) {
    printf("  %-28s no samples\n", what);
    return;
  }
  qsort(v, n, sizeof *v, cmp_i64);
  printf("  %-28s p50 %7.2f ms   p99 %7.2f ms   max %7.2f ms   (%zu of %" PRIu64 ")\n", what,
         v[n / 2] / 1e3, v[(size_t)((double)n * 0.99)] / 1e3, v[n - 1] / 1e3, n, expected);
}

static void phase_latency(void) {
  struct timeval ms = {0, 1000};
  P.target = (uint64_t)O.rate * (uint64_t)O.seconds;
  if (!(P.sent = calloc(P.target + 1, sizeof *P.sent)) ||
      !(P.acked = calloc(P.target + 1, sizeof *P.acked)))
    die("out of memory");
  connect_all(LAT_CONNS);
  P.tick = event_new(P.base, -1, EV_PERSIST, lat_tick, NULL);
  P.start_us = now_us();
  event_add(P.tick, &ms);
  event_base_dispatch(P.base);
  while (P.nacked < P.nsent)
    event_base_loop(P.base, EVLOOP_ONCE);
  int64_t wait_end = now_us() + 10000000;
  while (atomic_load_explicit(&CL.arrived, memory_order_acquire) < P.target && now_us() < wait_end)
    usleep(10000);
  int64_t *cloud_lat = calloc(P.target, sizeof *cloud_lat),
          *ack_lat = calloc(P.target, sizeof *ack_lat);
  size_t nc = 0, na = 0;
  for (uint64_t k = 1; k <= P.target; k++) {
    if (CL.arrive[k]) cloud_lat[nc++] = CL.arrive[k] - P.sent[k];
    if (P.acked[k]) ack_lat[na++] = P.acked[k] - P.sent[k];
  }
  printf("latency: %d changes/s over %d customers for %d s, one change per POST\n", O.rate,
         O.customers, O.seconds);
  report("POST -> 200 (durable)", ack_lat, na, P.target);
  report("POST -> create at the cloud", cloud_lat, nc, P.target);
  free(cloud_lat);
  free(ack_lat);
  event_free(P.tick);
  disconnect_all();
}

/* ---- phase 2: throughput ---- */

static void tput_send(struct evhttp_connection *conn);

static void tput_done(struct evhttp_request *req, void *arg) {
  P.busy--;
  P.requests++;
  const char *body = NULL;
  if (req && evhttp_request_get_response_code(req) == 200) {
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    evbuffer_add(in, "", 1);
    body = (const char *)evbuffer_pullup(in, -1);
  }
  const char *a = body ? strstr(body, "\"appended\":") : NULL;
  if (a)
    P.appended += strtoull(a + 11, NULL, 10);
  else
    P.tput_failed++;
  if (now_us() < P.end_us)
    tput_send(arg);
  else if (P.busy == 0)
    event_base_loopbreak(P.base);
}

static void tput_send(struct evhttp_connection *conn) {
  struct evbuffer *b = evbuffer_new();
  uint64_t cust = P.next_cust++ % (uint64_t)O.customers;
  for (int i = 0; i < O.batch; i++) {
    uint64_t k = ++P.next_key;
    evbuffer_add_printf(b,
                        "{\"table\":\"Bulk\",\"key\":%" PRIu64 ",\"op\":\"upsert\",\"version\":1,"
                        "\"row\":{\"Id\":%" PRIu64 ",\"Name\":\"row %" PRIu64
                        "\",\"Amount\":12.5,\"Active\":true}}\n",
                        k, k, k);
  }
  if (post(conn, cust, b, tput_done, conn))
    P.busy++;
  else
    P.tput_failed++;
  evbuffer_free(b);
}

static void phase_throughput(void) {
  connect_all(O.conns);
  int64_t t0 = now_us();
  P.end_us = t0 + (int64_t)O.tseconds * 1000000;
  for (int i = 0; i < P.nconns; i++)
    tput_send(P.conns[i]);
  event_base_dispatch(P.base);
  double secs = (double)(now_us() - t0) / 1e6;
  printf("ingest: %d connections, batches of %d changes, %d customers, %.1f s\n", O.conns, O.batch,
         O.customers, secs);
  printf("  %" PRIu64 " changes appended in %" PRIu64 " requests (%" PRIu64
         " failed): %.0f changes/s, %.0f requests/s\n",
         P.appended, P.requests, P.tput_failed, (double)P.appended / secs,
         (double)P.requests / secs);
  disconnect_all();
}

/* ------------------------------------------------------------------- main --- */

static void parse(int argc, char **argv) {
  if (argc < 2 || argv[1][0] == '-') {
    fprintf(stderr, "usage: bench_service FERRYD [--customers N] [--rate N] [--seconds N] "
                    "[--conns N] [--batch N] [--tseconds N] [--max-runs N] [--keep]\n");
    exit(2);
  }
  O.ferryd = argv[1];
  for (int i = 2; i < argc; i++) {
    int *dst = NULL;
    if (strcmp(argv[i], "--keep") == 0)
      O.keep = true;
    else if (strcmp(argv[i], "--max-runs") == 0 && i + 1 < argc)
      O.max_runs = argv[++i];
    else if (strcmp(argv[i], "--customers") == 0)
      dst = &O.customers;
    else if (strcmp(argv[i], "--rate") == 0)
      dst = &O.rate;
    else if (strcmp(argv[i], "--seconds") == 0)
      dst = &O.seconds;
    else if (strcmp(argv[i], "--conns") == 0)
      dst = &O.conns;
    else if (strcmp(argv[i], "--batch") == 0)
      dst = &O.batch;
    else if (strcmp(argv[i], "--tseconds") == 0)
      dst = &O.tseconds;
    else
      die("unknown option");
    if (dst && (++i >= argc || (*dst = atoi(argv[i])) <= 0)) die("expected a positive number");
  }
}

int main(int argc, char **argv) {
  parse(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  evthread_use_pthreads();
  snprintf(dir, sizeof dir, "/tmp/ferry-bench-service.XXXXXX");
  if (!mkdtemp(dir)) die("mkdtemp");
  cloud_start((size_t)O.rate * (size_t)O.seconds + 1);
  write_setup();
  ferryd_start();
  if (!(P.base = event_base_new())) die("event_base_new");
  printf("ferryd %s on 127.0.0.1:%d, cloud on 127.0.0.1:%d, data in %s\n", O.ferryd, ferryd_port,
         CL.port, dir);
  phase_latency();
  phase_throughput();
  int rc = ferryd_stop();
  printf("ferryd exit status %d; cloud requests %" PRIu64 "\n", rc,
         (uint64_t)atomic_load(&CL.requests));
  cloud_stop();
  event_base_free(P.base);
  free(P.sent);
  free(P.acked);
  if (!O.keep) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench_service: could not remove %s\n", dir);
  }
  return rc == 0 ? 0 : 1;
}
