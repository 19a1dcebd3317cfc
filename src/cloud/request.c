/*
 * Building the cloud client's requests (SPEC §3): URLs with URL-encoded ids
 * and external keys, the header lists (JSON, Authorization, Idempotency-Key),
 * and the libcurl options of one request. Ids come to us as JSON text so a
 * numeric id stays a number in applied state; in a URL path both 7 and "7"
 * are the text 7.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloud/client_int.h"
#include "ferry/json.h"

/* base_url + a + b + d, or NULL when out of memory. */
static char *url_join(const ferry_cloud *c, const char *a, const char *b, const char *d) {
  size_t n = c->base_len + strlen(a) + strlen(b) + strlen(d) + 1;
  char *u = malloc(n);
  if (u) snprintf(u, n, "%s%s%s%s", c->base_url, a, b, d);
  return u;
}

/* The text of an id given as JSON text: a string's characters, a number's
 * digits. FERRY_EINVAL for anything else. *out is malloc'd. */
static ferry_status id_text(const char *json, char **out, ferry_error *err) {
  ferry_status st = FERRY_OK;
  json_error_t jerr;
  json_t *v = json_loads(json, JSON_DECODE_ANY, &jerr);
  char num[32];
  *out = NULL;
  if (!v) {
    st = ferry_error_set(err, FERRY_EINVAL, "cloud id '%.64s' is not JSON", json);
    goto done;
  }
  if (json_is_string(v)) {
    *out = strdup(json_string_value(v));
  } else if (json_is_integer(v)) {
    snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    *out = strdup(num);
  } else if (json_is_real(v)) {
    ferry_json_format_double(num, json_real_value(v));
    *out = strdup(num);
  } else {
    st = ferry_error_set(err, FERRY_EINVAL, "cloud id '%.64s' is not a string or number", json);
    goto done;
  }
  if (!*out) st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
done:
  json_decref(v);
  return st;
}

/* URL-encodes text (curl_easy_escape ignores its handle since 7.82). */
static char *url_escape(const char *text) {
  return curl_easy_escape(NULL, text, (int)strlen(text));
}

/* The lookup URL: base + endpoint ? ext_field = value. */
static ferry_status find_url(ferry_cloud *c, cloud_op *op, const char *endpoint, ferry_error *err) {
  char *val = url_escape(op->external_key);
  if (val) {
    size_t n = c->base_len + strlen(endpoint) + strlen(c->ext_field_enc) + strlen(val) + 3;
    op->url_find = malloc(n);
    if (op->url_find)
      snprintf(op->url_find, n, "%s%s?%s=%s", c->base_url, endpoint, c->ext_field_enc, val);
  }
  curl_free(val);
  return op->url_find ? FERRY_OK : ferry_error_set(err, FERRY_ENOMEM, "out of memory");
}

static ferry_status create_headers(ferry_cloud *c, cloud_op *op, const char *key,
                                   ferry_error *err) {
  char line[160];
  if (strlen(key) > 100 || strpbrk(key, "\r\n"))
    return ferry_error_set(err, FERRY_EINVAL, "invalid Idempotency-Key");
  snprintf(line, sizeof line, "Idempotency-Key: %s", key);
  for (struct curl_slist *h = c->hdr_json; h; h = h->next) {
    struct curl_slist *n = curl_slist_append(op->create_headers, h->data);
    if (!n) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
    op->create_headers = n;
  }
  struct curl_slist *n = curl_slist_append(op->create_headers, line);
  if (!n) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  op->create_headers = n;
  return FERRY_OK;
}

/* PATCH/DELETE: base + endpoint / encoded id. */
static ferry_status record_url(ferry_cloud *c, cloud_op *op, const char *endpoint, const char *id,
                               ferry_error *err) {
  char *text = NULL, *enc = NULL;
  ferry_status st = id_text(id, &text, err);
  if (st) goto done;
  enc = url_escape(text);
  op->url_main = enc ? url_join(c, endpoint, "/", enc) : NULL;
  if (!op->url_main) st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
done:
  curl_free(enc);
  free(text);
  return st;
}

ferry_status request_delete_next(ferry_cloud *c, cloud_op *op, ferry_error *err) {
  json_t *rec = json_array_get(op->to_delete, op->delete_next++);
  char *id = rec ? ferry_json_dump(json_object_get(rec, c->id_field), 0) : NULL;
  free(op->url_main);
  op->url_main = NULL;
  ferry_status st = id ? record_url(c, op, op->endpoint, id, err)
                       : ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  free(id);
  return st;
}

ferry_status request_fix_url(ferry_cloud *c, cloud_op *op, ferry_error *err) {
  char *main_url = op->url_main;
  op->url_main = NULL;
  ferry_status st = record_url(c, op, op->endpoint, op->id, err);
  free(op->url_fix);
  op->url_fix = op->url_main; /* record_url fills url_main */
  op->url_main = main_url;
  return st;
}

static ferry_status prepare_by_key(ferry_cloud *c, cloud_op *op, const ferry_cloud_request *req,
                                   ferry_error *err) {
  ferry_status st = FERRY_OK;
  if (req->op == FERRY_CLOUD_CREATE && !req->idempotency_key)
    return ferry_error_set(err, FERRY_EINVAL, "a create needs its Idempotency-Key");
  if (!(op->external_key = strdup(req->external_key)))
    return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  if ((st = find_url(c, op, req->endpoint, err))) return st;
  if (req->op == FERRY_CLOUD_CREATE) {
    if (!(op->url_main = url_join(c, req->endpoint, "", "")))
      return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
    st = create_headers(c, op, req->idempotency_key, err);
  }
  return st;
}

ferry_status request_prepare(ferry_cloud *c, cloud_op *op, const ferry_cloud_request *req,
                             ferry_error *err) {
  const char *ep = req->endpoint;
  if (!ep || ep[0] != '/' || strpbrk(ep, "?# \r\n"))
    return ferry_error_set(err, FERRY_EINVAL, "invalid endpoint '%.64s'", ep ? ep : "");
  if (!(op->endpoint = strdup(ep))) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  switch (req->op) {
  case FERRY_CLOUD_CREATE:
  case FERRY_CLOUD_FIND:
    if (!req->external_key)
      return ferry_error_set(err, FERRY_EINVAL, "a create or find needs its external key");
    return prepare_by_key(c, op, req, err);
  case FERRY_CLOUD_DELETE:
    if (!req->id && req->external_key) return prepare_by_key(c, op, req, err);
    /* fall through */
  case FERRY_CLOUD_PATCH:
    if (!req->id) return ferry_error_set(err, FERRY_EINVAL, "a patch or delete needs the cloud id");
    return record_url(c, op, ep, req->id, err);
  }
  return ferry_error_set(err, FERRY_EINVAL, "unknown cloud call %d", (int)req->op);
}

const char *request_method(const cloud_op *op) {
  if (op->step == STEP_FIND) return "GET";
  if (op->step == STEP_FIX) return "PATCH";
  switch (op->kind) {
  case FERRY_CLOUD_CREATE: return "POST";
  case FERRY_CLOUD_PATCH: return "PATCH";
  case FERRY_CLOUD_DELETE: return "DELETE";
  case FERRY_CLOUD_FIND: return "GET";
  }
  return "GET";
}

/* CURLOPT_WRITEFUNCTION: appends to op's capped response buffer. */
static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg) {
  cloud_op *op = arg;
  resp_buf *b = &op->resp;
  size_t n = size * nmemb;
  if (n > FERRY_CLOUD_MAX_RESPONSE - b->len) {
    b->over = true;
    return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
  }
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) return 0;
    b->data = p;
    b->cap = cap;
  }
  memcpy(b->data + b->len, ptr, n);
  b->len += n;
  b->data[b->len] = '\0';
  return n;
}

/* CURLOPT_PREREQFUNCTION: runs each time curl is about to send the request.
 * When a reused connection dies before any answer byte, libcurl silently
 * sends the request again on a new one. For a create that second POST could
 * make a second record (the first may have committed), so we refuse it: the
 * attempt fails as ambiguous and the next one looks the record up first. */
static int on_send(void *arg, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                   int conn_local_port) {
  cloud_op *op = arg;
  (void)conn_primary_ip, (void)conn_local_ip, (void)conn_primary_port, (void)conn_local_port;
  if (op->sends++ > 0 && op->kind == FERRY_CLOUD_CREATE && op->step == STEP_MAIN) {
    op->resend_refused = true;
    return CURL_PREREQFUNC_ABORT;
  }
  return CURL_PREREQFUNC_OK;
}

ferry_status request_setup(ferry_cloud *c, cloud_op *op, CURL *e, ferry_error *err) {
  bool find = op->step == STEP_FIND || op->kind == FERRY_CLOUD_FIND;
  bool fix = op->step == STEP_FIX;
  const char *url = find ? op->url_find : fix ? op->url_fix : op->url_main;
  CURLcode rc = CURLE_OK;
  op->resp.len = 0;
  op->resp.over = false;
  op->errbuf[0] = '\0';
  op->sends = 0;
  op->resend_refused = false;
#define SET(opt, val)                                                                              \
  do {                                                                                             \
    if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val);                                        \
  } while (0)
  SET(CURLOPT_URL, url);
  SET(CURLOPT_PRIVATE, op);
  SET(CURLOPT_WRITEFUNCTION, on_body);
  SET(CURLOPT_WRITEDATA, op);
  SET(CURLOPT_ERRORBUFFER, op->errbuf);
  SET(CURLOPT_PREREQFUNCTION, on_send);
  SET(CURLOPT_PREREQDATA, op);
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
  SET(CURLOPT_TCP_NODELAY, 1L);
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
#endif
  if (find || op->kind == FERRY_CLOUD_DELETE) {
    SET(CURLOPT_HTTPHEADER, c->hdr_plain);
    if (find)
      SET(CURLOPT_HTTPGET, 1L);
    else
      SET(CURLOPT_CUSTOMREQUEST, "DELETE");
  } else if (fix) {
    SET(CURLOPT_HTTPHEADER, c->hdr_json);
    SET(CURLOPT_POSTFIELDS, op->fix_body);
    SET(CURLOPT_POSTFIELDSIZE, (long)strlen(op->fix_body));
    SET(CURLOPT_CUSTOMREQUEST, "PATCH");
  } else {
    SET(CURLOPT_HTTPHEADER, op->kind == FERRY_CLOUD_CREATE ? op->create_headers : c->hdr_json);
    SET(CURLOPT_POSTFIELDS, op->body);
    SET(CURLOPT_POSTFIELDSIZE, (long)strlen(op->body));
    if (op->kind == FERRY_CLOUD_PATCH) SET(CURLOPT_CUSTOMREQUEST, "PATCH");
  }
#undef SET
  if (rc != CURLE_OK)
    return ferry_error_set(err, rc == CURLE_OUT_OF_MEMORY ? FERRY_ENOMEM : FERRY_ECLOUD,
                           "cannot set up a request: %s", curl_easy_strerror(rc));
  return FERRY_OK;
}

static ferry_status append(struct curl_slist **l, const char *line, ferry_error *err) {
  struct curl_slist *n = curl_slist_append(*l, line);
  if (!n) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  *l = n;
  return FERRY_OK;
}

ferry_status request_headers_init(ferry_cloud *c, const char *token, ferry_error *err) {
  ferry_status st = FERRY_OK;
  if (token && *token) {
    if (strpbrk(token, "\r\n")) {
      st = ferry_error_set(err, FERRY_EAUTH, "the cloud token contains a line break");
      goto done;
    }
    size_t n = strlen("Authorization: Bearer ") + strlen(token) + 1;
    c->auth_header = malloc(n);
    if (!c->auth_header) {
      st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
      goto done;
    }
    snprintf(c->auth_header, n, "Authorization: Bearer %s", token);
  }
  /* "Expect:" turns off curl's 100-continue round trip for larger bodies */
  if ((st = append(&c->hdr_plain, "Accept: application/json", err))) goto done;
  if (c->auth_header && (st = append(&c->hdr_plain, c->auth_header, err))) goto done;
  if ((st = append(&c->hdr_json, "Accept: application/json", err))) goto done;
  if ((st = append(&c->hdr_json, "Content-Type: application/json", err))) goto done;
  if ((st = append(&c->hdr_json, "Expect:", err))) goto done;
  if (c->auth_header && (st = append(&c->hdr_json, c->auth_header, err))) goto done;
done:
  return st;
}
