/* ferry-cloudsim REST routes: create, list/find, get, patch, replace and delete records, and the
 * Stripe-style Idempotency-Key handling wrapped around the writes.
 *
 * Every handler writes its JSON answer into the request's output buffer and returns the status;
 * server.c decides when (and whether) that answer goes out. An idempotent request's answer is
 * copied out of that buffer and remembered, so a replay is byte-for-byte the first answer.
 */
#include <sys/queue.h> /* TAILQ_FOREACH for evkeyvalq; before the libevent headers */

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

/* More conditions than any real client sends; a cap so a query string cannot make us allocate
 * without bound. */
#define MAX_CONDS 32

static int dump_to_evbuffer(const char *buf, size_t size, void *data) {
  return evbuffer_add(data, buf, size);
}

int cs_reply_json(struct evhttp_request *req, int status, const json_t *v) {
  struct evbuffer *out = evhttp_request_get_output_buffer(req);
  if (json_dump_callback(v, dump_to_evbuffer, out, JSON_COMPACT) != 0) {
    evbuffer_drain(out, evbuffer_get_length(out));
    return cs_reply_error(req, 500, "out of memory");
  }
  return status;
}

int cs_reply_error(struct evhttp_request *req, int status, const char *msg) {
  evbuffer_add_printf(evhttp_request_get_output_buffer(req), "{\"error\":\"%s\"}", msg);
  return status;
}

/* The request body parsed as a JSON object (new reference), or NULL after writing a 400. */
static json_t *read_object(struct evhttp_request *req, int *status) {
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t len = evbuffer_get_length(in);
  const char *data = len ? (const char *)evbuffer_pullup(in, -1) : "";
  json_t *body = json_loadb(data, len, 0, NULL);

  if (!json_is_object(body)) {
    json_decref(body);
    body = NULL;
    *status = cs_reply_error(req, 400, "the body must be a JSON object");
  }
  return body;
}

/* Turns the parsed query into conditions; field names are URL-decoded here (evhttp decodes only
 * the values). Returns the count, or -1 for too many or out of memory. */
static int query_conds(struct evkeyvalq *params, cs_cond *conds, char **names) {
  int n = 0;
  struct evkeyval *kv;

  TAILQ_FOREACH(kv, params, next) {
    if (n == MAX_CONDS) return -1;
    names[n] = evhttp_uridecode(kv->key, 1, NULL);
    if (!names[n]) return -1;
    conds[n].field = names[n];
    conds[n].value = kv->value;
    n++;
  }
  return n;
}

/* GET {collection}[?field=value&...] */
static int list_records(cs_server *s, struct evhttp_request *req, const char *coll,
                        const char *query) {
  int status, n = 0;
  struct evkeyvalq params;
  cs_cond conds[MAX_CONDS];
  char *names[MAX_CONDS] = {0};
  cs_collection *c = cs_store_find(s->store, coll);
  json_t *found = NULL;

  TAILQ_INIT(&params);
  if (query && *query && evhttp_parse_query_str(query, &params) != 0) {
    status = cs_reply_error(req, 400, "malformed query string");
    goto done;
  }
  if ((n = query_conds(&params, conds, names)) < 0) {
    status = cs_reply_error(req, 400, "too many query parameters");
    goto done;
  }
  if (!c) { /* a collection nobody has written to is simply empty */
    evbuffer_add(evhttp_request_get_output_buffer(req), "[]", 2);
    status = 200;
    goto done;
  }
  if (cs_collection_find(s->store, c, conds, (size_t)n, &found) != CS_OK) {
    status = cs_reply_error(req, 500, "out of memory");
    goto done;
  }
  status = cs_reply_json(req, 200, found);
done:
  json_decref(found);
  for (int i = 0; i < MAX_CONDS && names[i]; i++)
    free(names[i]);
  evhttp_clear_headers(&params);
  return status;
}

/* POST {collection} */
static int create_record(cs_server *s, struct evhttp_request *req, const char *coll) {
  int status = 0;
  json_t *body = read_object(req, &status);
  json_t *rec = NULL;
  cs_collection *c;

  if (!body) goto done;
  if (!(c = cs_store_obtain(s->store, coll)) ||
      cs_collection_insert_take(s->store, c, body, &rec) != CS_OK) {
    if (!c) json_decref(body);
    status = cs_reply_error(req, 500, "out of memory");
    goto done;
  }
  status = cs_reply_json(req, 201, rec);
done:
  return status;
}

/* GET, PATCH, PUT and DELETE on {collection}/{id}. */
static int serve_record(cs_server *s, struct evhttp_request *req, enum evhttp_cmd_type cmd,
                        const cs_target *t) {
  int status = 0;
  cs_collection *c = cs_store_find(s->store, t->coll);
  json_t *rec = c ? cs_collection_get(c, t->id) : NULL;
  json_t *body = NULL;
  cs_status st = CS_OK;

  if (!rec) {
    status = cs_reply_error(req, 404, "not found");
    goto done;
  }
  if ((cmd == EVHTTP_REQ_PATCH || cmd == EVHTTP_REQ_PUT) && !(body = read_object(req, &status)))
    goto done;
  switch (cmd) {
  case EVHTTP_REQ_PATCH: st = cs_collection_patch(s->store, c, t->id, body, &rec); break;
  case EVHTTP_REQ_PUT:
    st = cs_collection_replace_take(s->store, c, t->id, body, &rec);
    body = NULL;
    break;
  case EVHTTP_REQ_DELETE: st = cs_collection_delete(c, t->id); break;
  default: break;
  }
  if (st != CS_OK) {
    status = cs_reply_error(req, 500, "out of memory");
  } else if (cmd == EVHTTP_REQ_DELETE) {
    evbuffer_add(evhttp_request_get_output_buffer(req), "{}", 2);
    status = 200;
  } else {
    status = cs_reply_json(req, 200, rec);
  }
done:
  json_decref(body);
  return status;
}

static int dispatch(cs_server *s, struct evhttp_request *req, enum evhttp_cmd_type cmd,
                    const cs_target *t, const char *query) {
  /* 405 only arises for PATCH/PUT/DELETE on a top-level path, which can only be a collection. */
  if (t->status == 405)
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, POST");
  if (t->status) return cs_reply_error(req, t->status, t->status == 400 ? "bad path" : "no route");
  if (t->id) return serve_record(s, req, cmd, t);
  return cmd == EVHTTP_REQ_POST ? create_record(s, req, t->coll)
                                : list_records(s, req, t->coll, query);
}

/* What makes two requests "the same" for one Idempotency-Key: method, path and body. A DELETE's
 * body means nothing, so it is left out. New string, NULL when out of memory. */
static char *fingerprint(struct evhttp_request *req, enum evhttp_cmd_type cmd, const cs_target *t,
                         size_t *len) {
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t blen = cmd == EVHTTP_REQ_DELETE ? 0 : evbuffer_get_length(in);
  size_t head = 16 + strlen(t->coll) + (t->id ? strlen(t->id) + 1 : 0);
  char *fp = malloc(head + blen + 1);

  if (!fp) return NULL;
  int n =
      snprintf(fp, head, "%d %s%s%s\n", (int)cmd, t->coll, t->id ? "/" : "", t->id ? t->id : "");
  evbuffer_copyout(in, fp + n, blen);
  *len = (size_t)n + blen;
  fp[*len] = '\0';
  return fp;
}

/* Answers from the idempotency table, or serves the request and remembers the answer. Answers
 * are remembered only when the route actually ran (2xx, or 404 for a missing record), as Stripe
 * does; a 400 for a bad body may be retried with a fixed one. */
static int serve_idempotent(cs_server *s, struct evhttp_request *req, enum evhttp_cmd_type cmd,
                            const cs_target *t, const char *query, const char *key) {
  int status = 500;
  size_t fp_len = 0, scope_len = strlen(t->account) + strlen(key) + 2, body_len;
  char *scope = malloc(scope_len);
  char *fp = fingerprint(req, cmd, t, &fp_len);
  const char *body;
  struct evbuffer *out = evhttp_request_get_output_buffer(req);

  if (!scope || !fp) {
    status = cs_reply_error(req, 500, "out of memory");
    goto done;
  }
  snprintf(scope, scope_len, "%s\n%s", t->account, key);
  switch (cs_store_idem_lookup(s->store, scope, fp, fp_len, &status, &body, &body_len)) {
  case CS_IDEM_REPLAY:
    s->stats.replayed++;
    evbuffer_add(out, body, body_len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Idempotent-Replayed", "true");
    break;
  case CS_IDEM_CONFLICT:
    s->stats.conflicts++;
    status = cs_reply_error(req, 422, "Idempotency-Key already used for a different request");
    break;
  case CS_IDEM_NEW:
    status = dispatch(s, req, cmd, t, query);
    if ((status >= 200 && status < 300) || status == 404) {
      size_t n = evbuffer_get_length(out);
      const char *data = n ? (const char *)evbuffer_pullup(out, -1) : "";
      /* Failing to remember only costs a later replay; the answer itself stands. */
      (void)cs_store_idem_remember(s->store, scope, fp, fp_len, status, data, n);
    }
    break;
  }
done:
  free(fp);
  free(scope);
  return status;
}

/* Keys go into the state file as JSON text, so only printable ASCII is accepted. */
static int key_ok(const char *key) {
  if (!*key || strlen(key) > 255) return 0;
  for (const unsigned char *p = (const unsigned char *)key; *p; p++)
    if (*p < 0x20 || *p > 0x7e) return 0;
  return 1;
}

int cs_routes_serve(cs_server *s, struct evhttp_request *req, enum evhttp_cmd_type cmd,
                    const cs_target *t, const char *query) {
  const char *key = NULL;

  if (!s->cfg->no_idempotency && cmd != EVHTTP_REQ_GET && !t->status)
    key = evhttp_find_header(evhttp_request_get_input_headers(req), "Idempotency-Key");
  if (!key) return dispatch(s, req, cmd, t, query);
  if (!key_ok(key))
    return cs_reply_error(req, 400, "Idempotency-Key must be 1..255 printable ASCII characters");
  return serve_idempotent(s, req, cmd, t, query, key);
}
