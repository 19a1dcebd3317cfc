/*
 * The HTTP server (SPEC §5): libevent's evhttp on the loop, its routes, and
 * who may call them.
 *
 * Authentication is a bearer token. The admin token (service.admin_token_env)
 * may do everything; a customer's ingest token (customers.X.ingest_token_env)
 * may only POST changes for X: for anyone else's customer it is 403, as it is
 * on every admin route; a missing or unknown token is 401. Tokens are
 * compared in constant time and never logged. GET /healthz needs no token,
 * so that a liveness probe needs no secret. With --insecure and no admin
 * token configured, a request without a token counts as admin.
 *
 * Limits: bodies over service.max_batch_bytes are refused by evhttp with 413
 * (lingering close, so the client reads the answer), headers are capped, and
 * a connection that sends nothing for --client-timeout-ms is closed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "ferry/json.h"
#include "service/service.h"

#define HEADERS_MAX (64 * 1024)
#define PATH_PREFIX "/v1/customers/"

typedef enum route {
  R_NONE = 0,
  R_HEALTHZ,
  R_METRICS,
  R_CHANGES,
  R_STATUS,
  R_HISTORY,
  R_REWIND,
  R_RESUME,
  R_REPLAY,
  R_RETRY,
  R_BACKUP
} route;

typedef enum who {
  WHO_NOBODY = 0, /* no token */
  WHO_BAD,        /* a token nobody has */
  WHO_ADMIN,
  WHO_SELF, /* the target customer's ingest token */
  WHO_OTHER /* another customer's ingest token */
} who;

/* ------------------------------------------------------------ replies --- */

int svc_http_code(ferry_status st) {
  switch (st) {
  case FERRY_OK: return 200;
  case FERRY_EINVAL: return 400;
  case FERRY_ENOTFOUND: return 404;
  case FERRY_ETOOBIG: return 413;
  case FERRY_EAUTH: return 401;
  case FERRY_EBUSY: return 503;
  case FERRY_EMAPPING_CHANGED: return 409;
  case FERRY_ENOMEM: return 503;
  case FERRY_EIO:
  case FERRY_ECONFIG:
  case FERRY_EMAPPING:
  case FERRY_ECORRUPT:
  case FERRY_ECLOUD:
  case FERRY_EFAILED:
  case FERRY_EINTERNAL: return 500;
  }
  return 500;
}

void svc_reply_buf(svc *s, struct evhttp_request *req, int code, const char *ctype,
                   struct evbuffer *body) {
  struct evkeyvalq *h = evhttp_request_get_output_headers(req);
  evhttp_add_header(h, "Content-Type", ctype);
  if (code == 401) evhttp_add_header(h, "WWW-Authenticate", "Bearer");
  if (s->stopping) evhttp_add_header(h, "Connection", "close");
  s->metrics.http[code / 100 <= 5 ? code / 100 : 0]++;
  if (s->opts.verbose) {
    const char *uri = evhttp_request_get_uri(req);
    svc_log(SVC_INFO, NULL, json_pack("{s:s, s:i}", "uri", uri ? uri : "", "status", code),
            "http %s", evhttp_request_get_command(req) == EVHTTP_REQ_POST ? "POST" : "GET");
  }
  evhttp_send_reply(req, code, NULL, body);
  if (body) evbuffer_free(body);
}

void svc_reply_json(svc *s, struct evhttp_request *req, int code, json_t *body) {
  char *text = body ? ferry_json_dump(body, 0) : NULL;
  struct evbuffer *b = evbuffer_new();
  json_decref(body);
  if (!text || !b || evbuffer_add(b, text, strlen(text)) || evbuffer_add(b, "\n", 1)) {
    if (b) evbuffer_free(b);
    free(text);
    b = evbuffer_new();
    if (b) evbuffer_add_printf(b, "{\"error\":\"out of memory\"}\n");
    svc_reply_buf(s, req, 503, "application/json", b);
    return;
  }
  free(text);
  svc_reply_buf(s, req, code, "application/json", b);
}

void svc_reply_error(svc *s, struct evhttp_request *req, int code, const char *fmt, ...) {
  char msg[1200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  json_t *o = json_object();
  json_t *m = json_string(msg);
  if (!m) m = json_string("(message not valid UTF-8)");
  if (o && m && json_object_set_new(o, "error", m) == 0) m = NULL;
  json_decref(m);
  svc_reply_json(s, req, code, o);
}

/* ------------------------------------------------------- authentication --- */

bool svc_token_equal(const char *given, size_t given_len, const char *secret, size_t secret_len) {
  /* the time depends on the secret's length only, never on where they differ */
  volatile unsigned char diff = given_len != secret_len;
  for (size_t i = 0; i < secret_len; i++)
    diff |= (unsigned char)(secret[i] ^ (i < given_len ? given[i] : 0));
  return diff == 0;
}

/* The bearer token of req, or NULL (and *len 0). */
static const char *bearer(struct evhttp_request *req, size_t *len) {
  const char *a = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
  *len = 0;
  if (!a) return NULL;
  if (strncasecmp(a, "Bearer ", 7) != 0) return "";
  a += 7;
  while (*a == ' ')
    a++;
  size_t n = strlen(a);
  while (n && (a[n - 1] == ' ' || a[n - 1] == '\t'))
    n--;
  *len = n;
  return a;
}

static who authenticate(svc *s, struct evhttp_request *req, const svc_cust *target) {
  size_t len;
  const char *tok = bearer(req, &len);
  const svc_conf *cf = s->conf;
  if (!tok) return cf->admin_token ? WHO_NOBODY : WHO_ADMIN; /* --insecure without a token */
  if (len == 0 || len > SVC_TOKEN_MAX) return WHO_BAD;
  if (cf->admin_token && svc_token_equal(tok, len, cf->admin_token, cf->admin_len))
    return WHO_ADMIN;
  if (target && target->ingest_token &&
      svc_token_equal(tok, len, target->ingest_token, target->ingest_len))
    return WHO_SELF;
  bool other = false;
  for (size_t i = 0; i < s->custs.count; i++) { /* all of them: no early exit, no timing hint */
    const svc_cust *c = s->custs.entries[i].val;
    if (c && c != target && c->ingest_token &&
        svc_token_equal(tok, len, c->ingest_token, c->ingest_len))
      other = true;
  }
  return other ? WHO_OTHER : WHO_BAD;
}

/* ------------------------------------------------------------- routing --- */

/* Parses the path into a route and, for customer routes, the id. */
static route parse_route(const char *path, char id[FERRY_CUSTOMER_MAX + 2]) {
  static const struct {
    const char *name;
    route r;
  } actions[] = {{"changes", R_CHANGES},   {"status", R_STATUS}, {"history", R_HISTORY},
                 {"rewind", R_REWIND},     {"resume", R_RESUME}, {"replay", R_REPLAY},
                 {"retry-failed", R_RETRY}};
  id[0] = '\0';
  if (!path) return R_NONE;
  if (strcmp(path, "/healthz") == 0) return R_HEALTHZ;
  if (strcmp(path, "/metrics") == 0) return R_METRICS;
  if (strcmp(path, "/v1/backup") == 0) return R_BACKUP;
  if (strncmp(path, PATH_PREFIX, strlen(PATH_PREFIX)) != 0) return R_NONE;
  const char *p = path + strlen(PATH_PREFIX), *slash = strchr(p, '/');
  if (!slash || slash == p || (size_t)(slash - p) > FERRY_CUSTOMER_MAX) return R_NONE;
  memcpy(id, p, (size_t)(slash - p));
  id[slash - p] = '\0';
  for (size_t i = 0; i < sizeof actions / sizeof *actions; i++)
    if (strcmp(slash + 1, actions[i].name) == 0) return actions[i].r;
  return R_NONE;
}

static bool method_ok(route r, enum evhttp_cmd_type m) {
  switch (r) {
  case R_HEALTHZ:
  case R_METRICS:
  case R_STATUS:
  case R_HISTORY: return m == EVHTTP_REQ_GET;
  case R_CHANGES:
  case R_REWIND:
  case R_RESUME:
  case R_REPLAY:
  case R_RETRY:
  case R_BACKUP: return m == EVHTTP_REQ_POST;
  case R_NONE: return false;
  }
  return false;
}

/* 401/403 for who on route r; 0 when allowed. */
static int refusal(route r, who w) {
  if (w == WHO_ADMIN) return 0;
  if (r == R_HEALTHZ) return 0;
  if (w == WHO_NOBODY || w == WHO_BAD) return 401;
  if (r == R_CHANGES && w == WHO_SELF) return 0;
  return 403;
}

static void dispatch(svc *s, struct evhttp_request *req, route r, svc_cust *c) {
  switch (r) {
  case R_HEALTHZ: svc_admin_healthz(s, req); break;
  case R_METRICS: {
    struct evbuffer *b = evbuffer_new();
    if (!b) {
      svc_reply_error(s, req, 503, "out of memory");
      return;
    }
    svc_metrics_render(s, b);
    svc_reply_buf(s, req, 200, "text/plain; version=0.0.4", b);
    break;
  }
  case R_CHANGES: svc_ingest_http(s, c, req); break;
  case R_STATUS: svc_admin_status(s, c, req); break;
  case R_HISTORY: svc_admin_history(s, c, req); break;
  case R_REWIND: svc_admin_op(s, c, SVC_OP_REWIND, req); break;
  case R_RESUME: svc_admin_op(s, c, SVC_OP_RESUME, req); break;
  case R_REPLAY: svc_admin_op(s, c, SVC_OP_REPLAY, req); break;
  case R_RETRY: svc_admin_op(s, c, SVC_OP_RETRY, req); break;
  case R_BACKUP: svc_admin_backup(s, req); break;
  case R_NONE: svc_reply_error(s, req, 404, "no such route"); break;
  }
}

static void on_request(struct evhttp_request *req, void *arg) {
  svc *s = arg;
  char id[FERRY_CUSTOMER_MAX + 2];
  const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
  route r = parse_route(u ? evhttp_uri_get_path(u) : NULL, id);
  bool customer_route = r != R_NONE && r != R_HEALTHZ && r != R_METRICS && r != R_BACKUP;
  if (s->stopping) {
    svc_reply_error(s, req, 503, "ferryd is shutting down");
    return;
  }
  if (r == R_NONE) {
    svc_reply_error(s, req, 404, "no such route");
    return;
  }
  if (!method_ok(r, evhttp_request_get_command(req))) {
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                      r == R_HEALTHZ || r == R_METRICS || r == R_STATUS || r == R_HISTORY ? "GET"
                                                                                          : "POST");
    svc_reply_error(s, req, 405, "method not allowed");
    return;
  }
  if (customer_route && (!ferry_customer_valid(id) || strcmp(id, SVC_RESERVED_CUSTOMER) == 0)) {
    svc_reply_error(s, req, 400, "invalid customer id: expected 1-%d characters of [A-Za-z0-9_.-]",
                    FERRY_CUSTOMER_MAX);
    return;
  }
  svc_cust *c = customer_route ? svc_cust_get(s, id, false) : NULL;
  int code = refusal(r, authenticate(s, req, c));
  if (code) {
    svc_reply_error(s, req, code,
                    code == 401 ? "missing or invalid token" : "this token may not do that");
    return;
  }
  if (r == R_CHANGES && !c && !(c = svc_cust_get(s, id, true))) { /* admin: a new customer */
    svc_reply_error(s, req, 503, "out of memory");
    return;
  }
  if (customer_route && !c) {
    svc_reply_error(s, req, 404, "no such customer: %s", id);
    return;
  }
  dispatch(s, req, r, c);
}

/* --------------------------------------------------------------- setup --- */

/* Splits "host:port" or "[v6]:port"; host is "" for ":port". */
static ferry_status split_listen(const char *listen, char *host, size_t hostcap, int *port,
                                 ferry_error *err) {
  const char *colon = strrchr(listen, ':');
  const char *h = listen, *he = colon;
  if (listen[0] == '[') {
    const char *close = strchr(listen, ']');
    if (!close || close[1] != ':') colon = NULL;
    h = listen + 1;
    he = close;
  }
  char *end = NULL;
  long p = colon ? strtol(colon + 1, &end, 10) : -1;
  if (!colon || !end || *end || end == colon + 1 || p < 0 || p > 65535 ||
      (size_t)(he - h) >= hostcap)
    return ferry_error_set(err, FERRY_ECONFIG,
                           "service.listen: expected HOST:PORT or [V6]:PORT, got \"%s\"", listen);
  memcpy(host, h, (size_t)(he - h));
  host[he - h] = '\0';
  *port = (int)p;
  return FERRY_OK;
}

/* Fills s->listen_addr with the address actually bound (port 0 picks one). */
static void bound_address(svc *s) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  char ip[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  evutil_socket_t fd = evhttp_bound_socket_get_fd(s->bound);
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) return;
  if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
    port = ntohs(a->sin6_port);
    snprintf(s->listen_addr, sizeof s->listen_addr, "[%s]:%d", ip, port);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    port = ntohs(a->sin_port);
    snprintf(s->listen_addr, sizeof s->listen_addr, "%s:%d", ip, port);
  }
}

ferry_status svc_http_start(svc *s, ferry_error *err) {
  const ferry_config *cfg = s->conf->cfg;
  char host[256];
  int port = 0;
  ferry_status st = split_listen(cfg->service.listen, host, sizeof host, &port, err);
  if (st) return st;
  if (!(s->http = evhttp_new(s->base))) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  evhttp_set_max_body_size(s->http, (ev_ssize_t)cfg->service.max_batch_bytes);
  evhttp_set_max_headers_size(s->http, HEADERS_MAX);
  struct timeval tv = {s->opts.client_timeout_ms / 1000, (s->opts.client_timeout_ms % 1000) * 1000};
  evhttp_set_timeout_tv(s->http, &tv);
  evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
  evhttp_set_flags(s->http, EVHTTP_SERVER_LINGERING_CLOSE);
  evhttp_set_gencb(s->http, on_request, s);
  s->bound = evhttp_bind_socket_with_handle(s->http, host[0] ? host : "0.0.0.0", (ev_uint16_t)port);
  if (!s->bound)
    return ferry_error_set(err, FERRY_EIO, "cannot listen on %s: %s", cfg->service.listen,
                           strerror(errno));
  bound_address(s);
  return FERRY_OK;
}

void svc_http_stop_accepting(svc *s) {
  if (s->http && s->bound) evhttp_del_accept_socket(s->http, s->bound);
  s->bound = NULL;
}

void svc_http_free(svc *s) {
  if (s->http) evhttp_free(s->http);
  s->http = NULL;
}
