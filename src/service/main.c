/*
 * ferryd: the service (SPEC §5). This file is its life cycle: arguments, the
 * configuration (and its reload on SIGHUP), opening the store, starting the
 * workers, the feeds and the HTTP server, the signals, DATA/ferryd.json, and
 * a clean stop on SIGTERM (nothing new accepted; appends, reads and cloud
 * calls in flight finish and are recorded; exit 0).
 *
 * Exit status: 0 after a clean stop; 1 a runtime failure (cannot listen,
 * storage); 2 invalid usage or configuration; 3 the data directory is in use.
 */
#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "service/service.h"

#define PIDFILE "ferryd.json"

static const char usage_text[] =
    "usage: ferryd --config FILE [options]\n"
    "\n"
    "Serves ingest, status and admin endpoints over HTTP and keeps every\n"
    "customer's cloud in step with its log (see docs/service.md).\n"
    "\n"
    "  --config FILE           the configuration file (required)\n"
    "  --data DIR              the data directory (overrides the file's `data`)\n"
    "  --insecure              start although no admin token is set; requests\n"
    "                          without a token are then treated as admin\n"
    "  --workers N             worker threads for folds and reads (default 4)\n"
    "  --max-runs N            runs starting at once: runs in their first second\n"
    "                          (default 16; longer ones wait on their cloud and\n"
    "                          do not count)\n"
    "  --client-timeout-ms MS  close a connection idle or stalled this long\n"
    "                          (default 30000)\n"
    "  --feed-wait S           how long a feed may hold a poll (default 30)\n"
    "  --log-level LEVEL       debug, info, warn or error (default info)\n"
    "  --verbose               one log line per HTTP request\n"
    "  --help, --version\n"
    "\n"
    "Signals: SIGTERM/SIGINT stop cleanly (a second one exits at once);\n"
    "SIGHUP reloads the configuration and the mapping.\n";

int64_t svc_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ------------------------------------------------------------------ conf --- */

svc_conf *svc_conf_ref(svc_conf *c) {
  if (c) c->refs++;
  return c;
}

void svc_conf_unref(svc_conf *c) {
  if (!c || --c->refs > 0) return;
  ferry_config_free(c->cfg);
  ferry_mapping_free(c->map);
  if (c->admin_token) {
    memset(c->admin_token, 0, c->admin_len);
    free(c->admin_token);
  }
  free(c);
}

/* Copies the value of the variable env names, or NULL when unset or empty. */
static char *secret_copy(const char *env, size_t *len) {
  const char *v = env ? ferry_config_secret(env) : NULL;
  *len = 0;
  if (!v || !*v) return NULL;
  *len = strlen(v);
  return strdup(v);
}

static ferry_status conf_load(const svc_opts *o, svc_conf **out, ferry_error *err) {
  ferry_status st = FERRY_OK;
  svc_conf *c = calloc(1, sizeof *c);
  *out = NULL;
  if (!c) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  c->refs = 1;
  if ((st = ferry_config_load(&c->cfg, o->config_path, err))) goto done;
  if ((st = ferry_mapping_load(&c->map, c->cfg->mapping, err))) goto done;
  c->admin_token = secret_copy(c->cfg->service.admin_token_env, &c->admin_len);
  if (!c->admin_token && !o->insecure)
    st = ferry_error_set(err, FERRY_ECONFIG,
                         "no admin token: set %s (service.admin_token_env), or start with "
                         "--insecure to serve without one",
                         c->cfg->service.admin_token_env);
  else if (c->admin_len > SVC_TOKEN_MAX)
    st = ferry_error_set(err, FERRY_ECONFIG, "the admin token in %s is over %d bytes",
                         c->cfg->service.admin_token_env, SVC_TOKEN_MAX);
done:
  if (st)
    svc_conf_unref(c);
  else
    *out = c;
  return st;
}

/* Applies the customers: section: tokens, feeds, and who is configured. */
static void apply_customers(svc *s) {
  const ferry_config *cfg = s->conf->cfg;
  for (size_t i = 0; i < cfg->ncustomers; i++)
    if (!svc_cust_get(s, cfg->customers[i].id, true))
      svc_log(SVC_ERROR, cfg->customers[i].id, NULL,
              "cannot serve this customer id (reserved, or out of memory)");
  for (size_t i = 0; i < s->custs.count; i++) {
    svc_cust *c = s->custs.entries[i].val;
    if (!c) continue;
    const ferry_customer_config *cc = ferry_config_customer(cfg, c->id);
    if (c->ingest_token) {
      memset(c->ingest_token, 0, c->ingest_len);
      free(c->ingest_token);
    }
    c->configured = cc != NULL;
    c->ingest_token = cc ? secret_copy(cc->ingest_token_env, &c->ingest_len) : NULL;
    if (cc && cc->ingest_token_env && !c->ingest_token)
      svc_log(SVC_WARN, c->id, json_pack("{s:s}", "variable", cc->ingest_token_env),
              "the ingest token variable is not set: only the admin token may ingest");
    svc_feed_configure(c, cc ? cc->feed_url : NULL);
  }
}

/* SIGHUP: a new configuration and mapping; runs in progress keep theirs. */
static void reload(svc *s) {
  svc_conf *nc = NULL;
  ferry_error err;
  ferry_error_clear(&err);
  if (conf_load(&s->opts, &nc, &err)) {
    svc_log(SVC_ERROR, NULL, NULL, "reload failed, keeping the running configuration: %s", err.msg);
    return;
  }
  svc_conf *old = s->conf;
  if (strcmp(old->cfg->service.listen, nc->cfg->service.listen) != 0)
    svc_log(SVC_WARN, NULL, NULL, "service.listen changed: it takes effect at the next start");
  if (strcmp(ferry_mapping_hash(old->map), ferry_mapping_hash(nc->map)) != 0)
    svc_log(SVC_WARN, NULL,
            json_pack("{s:s, s:s}", "old", ferry_mapping_hash(old->map), "new",
                      ferry_mapping_hash(nc->map)),
            "the mapping changed: each customer refuses to run until replayed "
            "(POST /v1/customers/C/replay)");
  evhttp_set_max_body_size(s->http, (ev_ssize_t)nc->cfg->service.max_batch_bytes);
  s->conf = nc;
  svc_conf_unref(old);
  apply_customers(s);
  svc_sched_reloaded(s);
  svc_log(SVC_INFO, NULL, NULL, "configuration reloaded");
}

/* ------------------------------------------------------------- pid file --- */

static char *pidfile_path(const svc *s, const char *suffix) {
  size_t n = strlen(s->opts.data_dir) + sizeof PIDFILE + strlen(suffix) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s%s", s->opts.data_dir, PIDFILE, suffix);
  return p;
}

/* DATA/ferryd.json: {"pid": N, "listen": "host:port"}, written atomically. */
static ferry_status pidfile_write(const svc *s, ferry_error *err) {
  char *path = pidfile_path(s, ""), *tmp = pidfile_path(s, ".tmp");
  ferry_status st = FERRY_OK;
  FILE *f = tmp ? fopen(tmp, "w") : NULL;
  if (!path || !tmp || !f) {
    st = ferry_error_set(err, FERRY_EIO, "cannot write %s: %s", tmp ? tmp : PIDFILE,
                         strerror(errno));
    goto done;
  }
  int bad = fprintf(f, "{\"pid\":%ld,\"listen\":\"%s\"}\n", (long)getpid(), s->listen_addr) < 0;
  bad |= fclose(f) != 0;
  if (bad || rename(tmp, path) != 0)
    st = ferry_error_set(err, FERRY_EIO, "cannot write %s: %s", path, strerror(errno));
done:
  free(path);
  free(tmp);
  return st;
}

static void pidfile_remove(const svc *s) {
  char *path = pidfile_path(s, "");
  if (path) unlink(path);
  free(path);
}

/* -------------------------------------------------------------- signals --- */

void svc_check_stopped(svc *s) {
  if (!s->stopping || s->running || svc_workers_pending(s->workers) || s->pending_ingests ||
      svc_feeds_busy(s) || s->health)
    return;
  event_base_loopbreak(s->base);
}

static void begin_stop(svc *s) {
  if (s->stopping) {
    svc_log(SVC_WARN, NULL, NULL, "second stop signal: exiting at once");
    pidfile_remove(s);
    _exit(1);
  }
  s->stopping = true;
  svc_log(SVC_INFO, NULL, json_pack("{s:I}", "running", (json_int_t)s->running),
          "stopping: no new work; calls in flight finish and are recorded");
  svc_http_stop_accepting(s);
  svc_feeds_stop(s);
  svc_sched_stop(s);
  svc_check_stopped(s);
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
  (void)what;
  if (sig == SIGHUP)
    reload(arg);
  else
    begin_stop(arg);
}

/* ---------------------------------------------------------------- start --- */

static int load_customer(void *arg, const char *id) {
  svc *s = arg;
  ferry_error err;
  svc_cust *c = svc_cust_get(s, id, true);
  if (c && ferry_store_head_seq(s->store, id, &c->head_seq, &err))
    svc_log(SVC_ERROR, id, NULL, "cannot read the head: %s", err.msg);
  return 0;
}

static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/* Everything up to listening; on failure, the exit status. */
static int start(svc *s, struct event **sigs) {
  ferry_error err;
  ferry_error_clear(&err);
  static const int signals[3] = {SIGTERM, SIGINT, SIGHUP};
  if (!(s->base = event_base_new()))
    return svc_log(SVC_ERROR, NULL, NULL, "cannot create the event loop"), 1;
  if (ferry_store_open(&s->store, s->opts.data_dir, FERRY_STORE_WRITE, &err))
    return svc_log(SVC_ERROR, NULL, NULL, "%s", err.msg), err.code == FERRY_EBUSY ? 3 : 1;
  if (svc_workers_start(&s->workers, s->base, s->opts.workers, &err) || svc_sched_init(s, &err) ||
      svc_feeds_create(s, &err) || ferry_store_customers(s->store, load_customer, s, &err))
    return svc_log(SVC_ERROR, NULL, NULL, "%s", err.msg), 1;
  if (svc_http_start(s, &err))
    return svc_log(SVC_ERROR, NULL, NULL, "%s", err.msg), err.code == FERRY_ECONFIG ? 2 : 1;
  for (int i = 0; i < 3; i++)
    if (!(sigs[i] = evsignal_new(s->base, signals[i], on_signal, s)) || evsignal_add(sigs[i], NULL))
      return svc_log(SVC_ERROR, NULL, NULL, "cannot watch signal %d", signals[i]), 1;
  if (pidfile_write(s, &err)) return svc_log(SVC_ERROR, NULL, NULL, "%s", err.msg), 1;
  apply_customers(s);
  svc_sched_start_all(s);
  s->started_us = svc_now_us();
  printf("listening on %s\n", s->listen_addr);
  fflush(stdout);
  svc_log(SVC_INFO, NULL,
          json_pack("{s:s, s:s, s:s, s:I, s:b}", "listen", s->listen_addr, "data", s->opts.data_dir,
                    "mapping_hash", ferry_mapping_hash(s->conf->map), "customers",
                    (json_int_t)s->custs.count, "insecure", s->conf->admin_token == NULL),
          "ferryd %s started", FERRY_VERSION);
  return 0;
}

/* ---------------------------------------------------------------- args --- */

static bool parse_uint(const char *text, unsigned long lo, unsigned long hi, unsigned long *out) {
  char *end = NULL;
  errno = 0;
  unsigned long v = text && *text != '-' ? strtoul(text, &end, 10) : 0;
  if (!text || !*text || *text == '-' || errno || !end || *end || v < lo || v > hi) return false;
  *out = v;
  return true;
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, svc_opts *o) {
  static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                           {"data", required_argument, NULL, 'd'},
                                           {"insecure", no_argument, NULL, 'i'},
                                           {"workers", required_argument, NULL, 'w'},
                                           {"max-runs", required_argument, NULL, 'm'},
                                           {"client-timeout-ms", required_argument, NULL, 't'},
                                           {"feed-wait", required_argument, NULL, 'f'},
                                           {"log-level", required_argument, NULL, 'l'},
                                           {"verbose", no_argument, NULL, 'v'},
                                           {"help", no_argument, NULL, 'h'},
                                           {"version", no_argument, NULL, 'V'},
                                           {NULL, 0, NULL, 0}};
  unsigned long v;
  svc_level lv;
  int ch, idx = 0;
  o->workers = 4;
  o->max_runs = 16;
  o->client_timeout_ms = 30000;
  o->feed_wait_s = 30;
  while ((ch = getopt_long(argc, argv, "", longopts, &idx)) != -1) {
    bool ok = true;
    switch (ch) {
    case 'c': o->config_path = optarg; break;
    case 'd': o->data_dir = optarg; break;
    case 'i': o->insecure = true; break;
    case 'w': ok = parse_uint(optarg, 1, 256, &v) && (o->workers = (unsigned)v); break;
    case 'm': ok = parse_uint(optarg, 1, 1000000, &v) && (o->max_runs = (unsigned)v); break;
    case 't': ok = parse_uint(optarg, 1, 86400000, &v) && (o->client_timeout_ms = (int)v); break;
    case 'f': ok = parse_uint(optarg, 1, 3600, &v) && (o->feed_wait_s = (int)v); break;
    case 'l': ok = svc_log_parse_level(optarg, &lv) && (svc_log_set_level(lv), true); break;
    case 'v': o->verbose = true; break;
    case 'h': fputs(usage_text, stdout); return 0;
    case 'V': printf("ferryd %s\n", FERRY_VERSION); return 0;
    default: fputs(usage_text, stderr); return 2;
    }
    if (!ok) {
      fprintf(stderr, "ferryd: invalid value '%s' for --%s\n", optarg, longopts[idx].name);
      return 2;
    }
  }
  if (optind < argc || !o->config_path) {
    fputs(usage_text, stderr);
    return 2;
  }
  return -1;
}

/* ---------------------------------------------------------------- main --- */

static void cleanup(svc *s, struct event **sigs) {
  for (int i = 0; i < 3; i++)
    if (sigs[i]) event_free(sigs[i]);
  svc_http_free(s); /* every request has been answered */
  svc_sched_free(s);
  svc_feeds_free(s);
  svc_workers_stop(s->workers);
  ferry_store_close(s->store);
  svc_conf_unref(s->conf);
  if (s->base) event_base_free(s->base);
  libevent_global_shutdown();
}

int main(int argc, char **argv) {
  svc s;
  struct event *sigs[3] = {NULL, NULL, NULL};
  ferry_error err;
  int rc;
  memset(&s, 0, sizeof s);
  if ((rc = parse_args(argc, argv, &s.opts)) >= 0) return rc;
  signal(SIGPIPE, SIG_IGN);
  srandom((unsigned)time(NULL) ^ (unsigned)getpid());
  raise_fd_limit();
  if (evthread_use_pthreads() != 0) {
    svc_log(SVC_ERROR, NULL, NULL, "libevent has no pthread support");
    return 1;
  }
  ferry_error_clear(&err);
  if (conf_load(&s.opts, &s.conf, &err)) {
    svc_log(SVC_ERROR, NULL, NULL, "%s", err.msg);
    return err.code == FERRY_ENOMEM || err.code == FERRY_EIO ? 1 : 2;
  }
  /* a copy: a reload frees the configuration it came from */
  char *data_dir = strdup(s.opts.data_dir     ? s.opts.data_dir
                          : s.conf->cfg->data ? s.conf->cfg->data
                                              : "./ferry-data");
  if (!data_dir) {
    svc_conf_unref(s.conf);
    return 1;
  }
  s.opts.data_dir = data_dir;
  if ((rc = start(&s, sigs)) == 0) {
    event_base_dispatch(s.base);
    rc = s.stopping ? 0 : 1;
    pidfile_remove(&s);
    svc_log(SVC_INFO, NULL, NULL, "stopped");
  } else if (s.stopping) {
    rc = 1;
  }
  cleanup(&s, sigs);
  free(data_dir);
  return rc;
}
