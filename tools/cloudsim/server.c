/* ferry-cloudsim HTTP server: listening, the life of one request, and the /_ admin routes.
 *
 * A collection request goes: resolve the path to collection/record/account -> count it and mark
 * it in flight for its account -> draw a fault -> check the bearer token -> run the route ->
 * deliver the answer now, or after --latency-ms, or drop the connection. The in-flight mark lasts
 * until delivery, so /_stats shows how many calls a client really had open per account at once.
 * Admin routes (/_stats, /_dump, /_reset) skip all of that: no faults, no auth, no latency, not
 * counted, so tests and benchmarks can always read the truth.
 */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "http.h"

static const char *const METHOD_NAMES[CS_N_METHODS] = {"GET",   "POST",   "PUT",
                                                       "PATCH", "DELETE", "OTHER"};

/* What server.c keeps about one collection request until its answer is delivered. */
typedef struct {
  json_t *account; /* owned reference to the account's [now, max] in-flight pair, or NULL */
  int method;
  struct timespec start; /* only with --verbose */
} cs_call;

static int method_slot(enum evhttp_cmd_type cmd) {
  switch (cmd) {
  case EVHTTP_REQ_GET: return CS_M_GET;
  case EVHTTP_REQ_POST: return CS_M_POST;
  case EVHTTP_REQ_PUT: return CS_M_PUT;
  case EVHTTP_REQ_PATCH: return CS_M_PATCH;
  case EVHTTP_REQ_DELETE: return CS_M_DELETE;
  default: return CS_M_OTHER;
  }
}

static const char *reason(int status) {
  switch (status) {
  case 200: return "OK";
  case 201: return "Created";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 422: return "Unprocessable Entity";
  case 429: return "Too Many Requests";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  default: return "Unknown";
  }
}

/* ---- path resolution -------------------------------------------------------------------- */

/* Resolves path into t. buf must hold 2 * (strlen(path) + 1) bytes; t's strings point into it.
 * The rule (docs/cloudsim.md): POST always addresses the whole path as a collection; PATCH, PUT
 * and DELETE always address the record named by the last segment in the collection named by the
 * rest; GET addresses a record when the rest is an existing collection and the whole path as a
 * collection otherwise. The account is the collection path minus its last segment. */
static void resolve(cs_store *store, enum evhttp_cmd_type cmd, const char *path, char *buf,
                    cs_target *t) {
  size_t len = strlen(path);
  char *norm = buf, *acct = buf + len + 1, *slash;

  memset(t, 0, sizeof *t);
  memcpy(norm, path, len + 1);
  while (len > 1 && norm[len - 1] == '/')
    norm[--len] = '\0'; /* "/x/contacts/" is the same */
  t->coll = norm;
  t->account = "/";
  for (const unsigned char *p = (const unsigned char *)norm; *p; p++)
    if (*p <= 0x20 || *p >= 0x7f) t->status = 400; /* paths become JSON keys; keep them ASCII */
  if (norm[0] != '/' || len < 2) t->status = t->status ? t->status : 404;
  if (t->status) goto done;

  slash = strrchr(norm, '/');
  if (cmd != EVHTTP_REQ_POST && slash != norm) {
    *slash = '\0';
    if (cmd != EVHTTP_REQ_GET || cs_store_find(store, norm)) {
      t->id = slash + 1;
    } else {
      *slash = '/';
    }
  } else if (cmd != EVHTTP_REQ_POST && cmd != EVHTTP_REQ_GET) {
    t->status = 405; /* a top-level path has no parent collection for the record to be in */
  }
  memcpy(acct, norm, strlen(norm) + 1);
  slash = strrchr(acct, '/');
  if (slash && slash != acct) {
    *slash = '\0';
    t->account = acct;
  }
done:
  return;
}

/* ---- in-flight accounting and delivery ------------------------------------------------- */

/* The account's [now, max] pair with now raised by one; a new reference, NULL when out of
 * memory (the request is then simply not tracked). */
static json_t *inflight_enter(cs_server *s, const char *account) {
  json_t *pair = json_object_get(s->stats.accounts, account);
  json_int_t now;

  if (!pair) {
    pair = json_pack("[ii]", 0, 0);
    if (!pair || json_object_set_new(s->stats.accounts, account, pair) != 0) return NULL;
  }
  now = json_integer_value(json_array_get(pair, 0)) + 1;
  json_integer_set(json_array_get(pair, 0), now);
  if (now > json_integer_value(json_array_get(pair, 1)))
    json_integer_set(json_array_get(pair, 1), now);
  return json_incref(pair);
}

static void inflight_leave(json_t *pair) {
  json_t *now = json_array_get(pair, 0);
  if (now) json_integer_set(now, json_integer_value(now) - 1);
  json_decref(pair);
}

static void log_request(struct evhttp_request *req, const cs_call *call, int status) {
  struct timespec end;
  clock_gettime(CLOCK_MONOTONIC, &end);
  double ms = (double)(end.tv_sec - call->start.tv_sec) * 1e3 +
              (double)(end.tv_nsec - call->start.tv_nsec) / 1e6;
  if (status)
    fprintf(stderr, "%s %s %d %.1fms\n", METHOD_NAMES[call->method], evhttp_request_get_uri(req),
            status, ms);
  else
    fprintf(stderr, "%s %s dropped %.1fms\n", METHOD_NAMES[call->method],
            evhttp_request_get_uri(req), ms);
}

/* Sends the answer (status 0: drops the connection) and ends the call's in-flight mark. */
static void deliver(cs_server *s, struct evhttp_request *req, int status, cs_call *call) {
  if (s->cfg->verbose) log_request(req, call, status);
  inflight_leave(call->account);
  call->account = NULL;
  if (!status) {
    cs_drop_request(req);
  } else {
    if (status < 600) s->stats.by_status[status]++;
    if (status == 429) {
      char secs[24];
      snprintf(secs, sizeof secs, "%lu", s->cfg->retry_after);
      evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", secs);
    }
    evhttp_send_reply(req, status, reason(status), NULL);
  }
}

static void deliver_held(void *owner, struct evhttp_request *req, int status, void *call) {
  deliver(owner, req, status, call);
  free(call);
}

static void release_held(void *owner, void *call) {
  (void)owner;
  json_decref(((cs_call *)call)->account);
  free(call);
}

/* Answers now when it can; a drop or a latency goes through the hold queue. */
static void finish(cs_server *s, struct evhttp_request *req, int status, cs_call *call) {
  cs_call *held;

  if (status && s->cfg->latency_ms == 0) goto now;
  held = malloc(sizeof *held);
  if (held) {
    *held = *call;
    if (cs_holdq_add(&s->held, req, status, s->cfg->latency_ms, held) == 0) return;
    free(held);
  }
  /* No memory to wait: answering at once beats freeing a connection under libevent's feet. */
  if (!status) status = cs_reply_error(req, 503, "out of memory");
now:
  deliver(s, req, status, call);
}

/* ---- collection requests --------------------------------------------------------------- */

static int authorized(const cs_server *s, struct evhttp_request *req) {
  const char *h;
  if (!s->token) return 1;
  h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
  return h && strncasecmp(h, "Bearer ", 7) == 0 && strcmp(h + 7, s->token) == 0;
}

/* Status for a fault that stops the request, 0 for a drop, -1 when the request goes ahead. */
static int apply_fault(cs_server *s, struct evhttp_request *req, cs_fault fault, int fail_status) {
  switch (fault) {
  case CS_FAULT_DROP: s->stats.dropped++; return 0;
  case CS_FAULT_FAIL:
    s->stats.failed++;
    return cs_reply_error(req, fail_status, "simulated failure");
  case CS_FAULT_THROTTLE:
    s->stats.throttled++;
    return cs_reply_error(req, 429, "simulated throttling");
  case CS_FAULT_COMMIT_DROP:
  case CS_FAULT_NONE: break;
  }
  return -1;
}

static void serve_collection(cs_server *s, struct evhttp_request *req, const char *path,
                             const char *query) {
  enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
  cs_call call = {.method = method_slot(cmd)};
  char *buf = malloc(2 * (strlen(path) + 1));
  int status, fail_status = 500;
  cs_target t;
  cs_fault fault;

  if (s->cfg->verbose) clock_gettime(CLOCK_MONOTONIC, &call.start);
  s->stats.total++;
  s->stats.by_method[call.method]++;
  if (!buf) {
    status = cs_reply_error(req, 500, "out of memory");
    goto done;
  }
  resolve(s->store, cmd, path, buf, &t);
  call.account = inflight_enter(s, t.account);
  fault = cs_faults_draw(&s->faults, &fail_status);
  if ((status = apply_fault(s, req, fault, fail_status)) >= 0) goto done;
  if (!authorized(s, req)) {
    evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
    status = cs_reply_error(req, 401, "missing or wrong bearer token");
    goto done;
  }
  status = cs_routes_serve(s, req, cmd, &t, query);
  if (fault == CS_FAULT_COMMIT_DROP) {
    s->stats.commit_dropped++;
    status = 0; /* the work is done; the client just never hears of it */
  }
done:
  finish(s, req, status, &call);
  free(buf);
}

/* ---- admin routes ------------------------------------------------------------------------ */

static json_t *counters_json(const cs_stats *st) {
  json_t *methods = json_object(), *statuses = json_object();
  char code[8];

  for (int i = 0; methods && i < CS_N_METHODS; i++)
    if (st->by_method[i])
      json_object_set_new(methods, METHOD_NAMES[i], json_integer((json_int_t)st->by_method[i]));
  for (int i = 0; statuses && i < 600; i++) {
    if (!st->by_status[i]) continue;
    snprintf(code, sizeof code, "%d", i);
    json_object_set_new(statuses, code, json_integer((json_int_t)st->by_status[i]));
  }
  return json_pack("{s:I,s:o,s:o}", "total", (json_int_t)st->total, "by_method", methods,
                   "by_status", statuses);
}

static json_t *stats_json(cs_server *s) {
  const cs_stats *st = &s->stats;
  json_t *accounts = json_object(), *pair;
  const char *name;
  size_t total = 0;
  json_t *counts = cs_store_counts(s->store, &total);

  json_object_foreach(st->accounts, name, pair) {
    json_object_set_new(accounts, name,
                        json_pack("{s:O,s:O}", "in_flight", json_array_get(pair, 0),
                                  "max_in_flight", json_array_get(pair, 1)));
  }
  return json_pack("{s:o,s:I,s:{s:I,s:I,s:I,s:I},s:{s:I,s:I},s:o,s:{s:I,s:o}}", "requests",
                   counters_json(st), "connections_accepted", (json_int_t)st->connections, "faults",
                   "dropped", (json_int_t)st->dropped, "failed", (json_int_t)st->failed,
                   "throttled", (json_int_t)st->throttled, "committed_then_dropped",
                   (json_int_t)st->commit_dropped, "idempotency", "replayed",
                   (json_int_t)st->replayed, "conflicts", (json_int_t)st->conflicts, "accounts",
                   accounts, "records", "total", (json_int_t)total, "by_collection", counts);
}

static void reset_all(cs_server *s) {
  json_t *accounts = s->stats.accounts;
  cs_store_reset(s->store);
  json_object_clear(accounts);
  memset(&s->stats, 0, sizeof s->stats);
  s->stats.accounts = accounts;
}

static void serve_admin(cs_server *s, struct evhttp_request *req, const char *path) {
  enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
  int status;
  json_t *v = NULL;

  if (strcmp(path, "/_stats") == 0 && cmd == EVHTTP_REQ_GET) {
    v = stats_json(s);
    status = v ? cs_reply_json(req, 200, v) : cs_reply_error(req, 500, "out of memory");
  } else if (strcmp(path, "/_dump") == 0 && cmd == EVHTTP_REQ_GET) {
    v = cs_store_dump(s->store);
    status = v ? cs_reply_json(req, 200, v) : cs_reply_error(req, 500, "out of memory");
  } else if (strcmp(path, "/_reset") == 0 && cmd == EVHTTP_REQ_POST) {
    reset_all(s);
    evbuffer_add(evhttp_request_get_output_buffer(req), "{}", 2);
    status = 200;
  } else {
    status = cs_reply_error(req, 404, "admin routes: GET /_stats, GET /_dump, POST /_reset");
  }
  json_decref(v);
  evhttp_send_reply(req, status, reason(status), NULL);
}

static void on_request(struct evhttp_request *req, void *arg) {
  cs_server *s = arg;
  const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
  const char *path = evhttp_uri_get_path(uri);

  if (!path || !*path) path = "/";
  if (strncmp(path, "/_", 2) == 0)
    serve_admin(s, req, path);
  else
    serve_collection(s, req, path, evhttp_uri_get_query(uri));
}

/* evhttp asks for each accepted connection's bufferevent here, which is the one place that sees
 * every accept. */
static struct bufferevent *on_accept(struct event_base *base, void *arg) {
  cs_server *s = arg;
  s->stats.connections++;
  return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
}

/* ---- start and stop ---------------------------------------------------------------------- */

/* Splits "HOST:PORT" (or "[v6]:PORT") into host (written to buf) and port. */
static int parse_listen(const char *listen, char *buf, size_t buflen, unsigned *port) {
  const char *colon = strrchr(listen, ':');
  char *end;
  unsigned long p;
  size_t hlen;

  if (!colon || colon == listen) return -1;
  p = strtoul(colon + 1, &end, 10);
  if (end == colon + 1 || *end || p > 65535) return -1;
  hlen = (size_t)(colon - listen);
  if (listen[0] == '[' && colon[-1] == ']') {
    listen++;
    hlen -= 2;
  }
  if (hlen == 0 || hlen >= buflen) return -1;
  memcpy(buf, listen, hlen);
  buf[hlen] = '\0';
  *port = (unsigned)p;
  return 0;
}

/* The port the socket really got, which differs from the asked one for port 0. */
static unsigned bound_port(struct evhttp_bound_socket *sock) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  evutil_socket_t fd = evhttp_bound_socket_get_fd(sock);

  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return 0;
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int cs_server_start(cs_server **out, struct event_base *base, cs_store *store, const cs_config *cfg,
                    const char *token, unsigned *port, char *err, size_t errlen) {
  int rc = -1;
  char host[256];
  struct evhttp_bound_socket *sock;
  cs_server *s = calloc(1, sizeof *s);

  *out = NULL;
  if (!s || !(s->stats.accounts = json_object()) || !(s->http = evhttp_new(base))) {
    snprintf(err, errlen, "out of memory");
    goto done;
  }
  s->base = base;
  s->store = store;
  s->cfg = cfg;
  s->token = token;
  cs_faults_init(&s->faults, cfg);
  cs_holdq_init(&s->held, base, deliver_held, s);
  if (parse_listen(cfg->listen, host, sizeof host, port) != 0) {
    snprintf(err, errlen, "--listen wants HOST:PORT, not '%s'", cfg->listen);
    goto done;
  }
  evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                          EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE);
  evhttp_set_max_body_size(s->http, (ev_ssize_t)cfg->max_body);
  evhttp_set_default_content_type(s->http, "application/json");
  evhttp_set_gencb(s->http, on_request, s);
  evhttp_set_bevcb(s->http, on_accept, s);
  if (!(sock = evhttp_bind_socket_with_handle(s->http, host, (ev_uint16_t)*port))) {
    snprintf(err, errlen, "cannot listen on %s", cfg->listen);
    goto done;
  }
  *port = bound_port(sock);
  *out = s;
  s = NULL;
  rc = 0;
done:
  cs_server_stop(s);
  return rc;
}

void cs_server_stop(cs_server *s) {
  if (!s) return;
  if (s->http) {
    cs_holdq_clear(&s->held, release_held);
    evhttp_free(s->http); /* closes connections, freeing the requests still on them */
  }
  json_decref(s->stats.accounts);
  free(s);
}
