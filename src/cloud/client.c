/*
 * The cloud client: calls, the queue in front of the wire, the rate limit,
 * and retries (answer.c says what each answer means, request.c builds the
 * requests, curl_loop.c moves the bytes).
 *
 * DESIGN: flow control and retries
 *   A call is queued until a slot is free (at most `concurrency` requests on
 *   the wire, which is also the connection cap per host, so connections are
 *   reused rather than opened) and the rate limit allows a request: a token
 *   bucket of one token refilled every 1/rate_limit s, so no second ever holds
 *   more than rate_limit requests. Every HTTP request takes a token, retries
 *   and lookups included, because that is what the cloud counts.
 *   A retryable failure frees the slot and starts a backoff timer: full jitter,
 *   a uniform wait in [0, min(cap, base * 2^(failures-1))], raised to the
 *   Retry-After the cloud asked for. When it fires the call queues again.
 *   After max_attempts failed requests the call ends UNKNOWN ("exhausted"):
 *   the entity is not at fault, the cloud is, and the caller leaves it dirty.
 *   Waiting calls hold no slot, so a struggling entity never starves others.
 *   Results are delivered from the loop, never from inside a public call, so
 *   callers may submit or wind down from their callbacks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack: streaming without a copy */
#include <xxhash.h>

#include "cloud/client_int.h"
#include "ferry/json.h"

int64_t cloud_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* splitmix64: jitter needs speed and spread, not secrecy */
static uint64_t next_rand(ferry_cloud *c) {
  uint64_t z = (c->rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void pump(ferry_cloud *c);
static void on_op_timer(evutil_socket_t fd, short what, void *arg);

/* ---------------------------------------------------------------- ops --- */

static void op_free(cloud_op *op) {
  if (!op) return;
  if (op->timer) event_free(op->timer);
  if (op->easy) {
    curl_loop_remove(op->c->loop, op->easy);
    curl_easy_cleanup(op->easy);
  }
  curl_slist_free_all(op->create_headers);
  free(op->url_main);
  free(op->url_find);
  free(op->body);
  free(op->fix_body);
  free(op->url_fix);
  free(op->external_key);
  free(op->endpoint);
  json_decref(op->to_delete);
  free(op->resp.data);
  free(op->id);
  json_decref(op->found);
  free(op);
}

static void unlink_op(ferry_cloud *c, cloud_op *op) {
  if (op->prev)
    op->prev->next = op->next;
  else
    c->ops = op->next;
  if (op->next) op->next->prev = op->prev;
  op->prev = op->next = NULL;
}

static void enqueue(ferry_cloud *c, cloud_op *op, bool front) {
  op->state = OP_QUEUED;
  op->qnext = NULL;
  if (!c->qhead) {
    c->qhead = c->qtail = op;
  } else if (front) {
    op->qnext = c->qhead;
    c->qhead = op;
  } else {
    c->qtail->qnext = op;
    c->qtail = op;
  }
}

static void dequeue(ferry_cloud *c, cloud_op *op) {
  cloud_op **pp = &c->qhead, *prev = NULL;
  while (*pp && *pp != op) {
    prev = *pp;
    pp = &(*pp)->qnext;
  }
  if (!*pp) return;
  *pp = op->qnext;
  if (c->qtail == op) c->qtail = prev;
  op->qnext = NULL;
}

/* Delivers op's result and frees it. */
static void finish(ferry_cloud *c, cloud_op *op) {
  char method[8];
  snprintf(method, sizeof method, "%s", request_method(op));
  const char *url = op->step == STEP_FIND || op->kind == FERRY_CLOUD_FIND ? op->url_find
                    : op->step == STEP_FIX                                ? op->url_fix
                                                                          : op->url_main;
  ferry_cloud_result r = {
      .outcome = op->outcome,
      .http_status = op->http_status,
      .attempts = op->attempts,
      .retries = op->retries,
      .exhausted = op->exhausted,
      .unauthorized = op->unauthorized,
      .cancelled = op->cancelled,
      .id = op->id,
      .found = op->found,
      .error = op->error[0] ? op->error : NULL,
      .method = method,
      .path = url ? url + c->base_len : "",
      .latency_us = cloud_now_us() - op->started_us,
  };
  /* an adoption keeps its note about extra records; other successes drop
   * the text of earlier failed attempts */
  if ((r.outcome == FERRY_OUTCOME_OK || r.outcome == FERRY_OUTCOME_GONE) && !op->note)
    r.error = NULL;
  unlink_op(c, op);
  c->pending--;
  c->stats.calls++;
  if (c->pending == 0) c->winding_down = false; /* the client may be used again */
  op->done(op->arg, &r);
  op_free(op);
}

/* Ends op from the loop rather than from the current call stack. */
static void finish_later(cloud_op *op, ferry_outcome o) {
  op->outcome = o;
  op->state = OP_ENDING;
  event_active(op->timer, EV_TIMEOUT, 0);
}

static void cancel(cloud_op *op) {
  op->cancelled = true;
  if (!op->error[0]) snprintf(op->error, sizeof op->error, "stopped before the call finished");
  finish_later(op, FERRY_OUTCOME_UNKNOWN);
}

/* The backoff before attempt failures+1, in ms (see DESIGN). */
static int64_t backoff_ms(ferry_cloud *c, const cloud_op *op, int64_t retry_after_s) {
  int64_t ceiling = c->backoff_base_ms;
  for (unsigned i = 1; i < op->failures && ceiling < c->backoff_cap_ms; i++)
    ceiling *= 2;
  if (ceiling > c->backoff_cap_ms) ceiling = c->backoff_cap_ms;
  int64_t wait = ceiling > 0 ? (int64_t)(next_rand(c) % (uint64_t)(ceiling + 1)) : 0;
  if (retry_after_s > FERRY_CLOUD_MAX_RETRY_AFTER_S) retry_after_s = FERRY_CLOUD_MAX_RETRY_AFTER_S;
  if (retry_after_s > 0 && wait < retry_after_s * 1000) wait = retry_after_s * 1000;
  return wait;
}

static void schedule_retry(ferry_cloud *c, cloud_op *op, int64_t retry_after_s) {
  op->failures++;
  if (c->winding_down) {
    cancel(op);
    return;
  }
  if (op->failures >= (unsigned)c->max_attempts) {
    op->exhausted = true;
    size_t n = strlen(op->error);
    snprintf(op->error + n, sizeof op->error - n, " (gave up after %u attempts)", op->attempts);
    finish_later(op, FERRY_OUTCOME_UNKNOWN);
    return;
  }
  int64_t ms = backoff_ms(c, op, retry_after_s);
  struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
  op->state = OP_WAITING;
  op->retries++;
  c->stats.retries++;
  evtimer_add(op->timer, &tv);
}

/* A request of op ended (curl_loop's callback). */
static void on_transfer_done(void *arg, CURL *easy, CURLcode rc) {
  ferry_cloud *c = arg;
  cloud_op *op = NULL;
  long status = 0, connects = 0;
  curl_off_t retry_after = 0;
  curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&op);
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &connects);
  curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &retry_after);
  c->on_wire--;
  c->stats.connects += (uint64_t)connects;
  if (rc != CURLE_OK) c->stats.transport_errors++;
  c->stats.by_status[rc == CURLE_OK && status > 0 && status < 600 ? status : 0]++;
  if (op->step == STEP_FIND && op->kind == FERRY_CLOUD_CREATE) c->stats.finds++;
  /* the handle goes back to the pool; its connection stays in the multi's cache */
  op->easy = NULL;
  curl_easy_reset(easy);
  if (c->npool < c->concurrency)
    c->pool[c->npool++] = easy;
  else
    curl_easy_cleanup(easy);

  op->state = OP_IDLE;
  switch (answer_judge(c, op, rc, status)) {
  case V_END: finish(c, op); break;
  case V_RETRY: schedule_retry(c, op, (int64_t)retry_after); break;
  case V_NEXT:
    if (c->winding_down)
      cancel(op);
    else
      enqueue(c, op, true);
    break;
  }
  pump(c);
}

/* Puts op's next request on the wire. */
static ferry_status start_request(ferry_cloud *c, cloud_op *op, ferry_error *err) {
  ferry_status st = FERRY_OK;
  CURL *e = c->npool > 0 ? c->pool[--c->npool] : curl_easy_init();
  if (!e) return ferry_error_set(err, FERRY_ENOMEM, "out of memory starting a request");
  if ((st = request_setup(c, op, e, err)) || (st = curl_loop_add(c->loop, e, err))) {
    curl_easy_cleanup(e);
    return st;
  }
  op->easy = e;
  op->state = OP_ON_WIRE;
  op->attempts++;
  c->on_wire++;
  c->stats.requests++;
  return FERRY_OK;
}

static void on_rate_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  pump(arg);
}

/* Starts queued requests while slots and the rate limit allow. */
static void pump(ferry_cloud *c) {
  while (c->qhead && c->on_wire < c->concurrency) {
    if (c->rate_limit > 0) {
      int64_t now = cloud_now_us();
      if (now < c->next_send_us) {
        int64_t us = c->next_send_us - now;
        struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
        evtimer_add(c->rate_timer, &tv);
        return;
      }
      int64_t gap = (int64_t)(1e6 / c->rate_limit);
      c->next_send_us = (c->next_send_us > now ? c->next_send_us : now) + gap;
    }
    cloud_op *op = c->qhead;
    dequeue(c, op);
    ferry_error err;
    if (start_request(c, op, &err) != FERRY_OK) {
      snprintf(op->error, sizeof op->error, "%.500s", err.msg);
      finish_later(op, FERRY_OUTCOME_UNKNOWN);
    }
  }
}

static void on_op_timer(evutil_socket_t fd, short what, void *arg) {
  cloud_op *op = arg;
  ferry_cloud *c = op->c;
  (void)fd;
  (void)what;
  if (op->state == OP_ENDING) {
    finish(c, op);
  } else if (op->state == OP_WAITING) {
    if (c->winding_down) {
      cancel(op);
      return;
    }
    enqueue(c, op, false);
    pump(c);
  }
}

/* ------------------------------------------------------------ public --- */

void ferry_cloud_opts_init(ferry_cloud_opts *o) {
  memset(o, 0, sizeof *o);
  o->id_field = "id";
  o->external_key_field = "legacy_key";
  o->concurrency = 16;
  o->timeout_ms = 10000;
  o->max_attempts = 8;
  o->backoff_base_ms = 100;
  o->backoff_cap_ms = 10000;
}

static ferry_status check_opts(const ferry_cloud_opts *o, ferry_error *err) {
  if (!o->base_url || strncmp(o->base_url, "http", 4) != 0 || strpbrk(o->base_url, " \r\n?#"))
    return ferry_error_set(err, FERRY_EINVAL, "cloud base URL '%.128s' is not an http(s) URL",
                           o->base_url ? o->base_url : "");
  if (o->concurrency < 1 || o->concurrency > 4096)
    return ferry_error_set(err, FERRY_EINVAL, "cloud concurrency must be 1..4096");
  if (o->timeout_ms < 1 || o->max_attempts < 1 || o->backoff_base_ms < 0 ||
      o->backoff_cap_ms < o->backoff_base_ms || !(o->rate_limit >= 0))
    return ferry_error_set(err, FERRY_EINVAL, "invalid cloud timeout, attempts, backoff or rate");
  return FERRY_OK;
}

/* Copies the strings of o into c. */
static ferry_status copy_opts(ferry_cloud *c, const ferry_cloud_opts *o, ferry_error *err) {
  size_t n = strlen(o->base_url);
  while (n > 0 && o->base_url[n - 1] == '/')
    n--; /* endpoints start with '/' */
  c->base_url = strndup(o->base_url, n);
  c->base_len = n;
  c->id_field = strdup(o->id_field ? o->id_field : "id");
  c->ext_field = strdup(o->external_key_field ? o->external_key_field : "legacy_key");
  c->ext_field_enc = c->ext_field ? curl_easy_escape(NULL, c->ext_field, 0) : NULL;
  c->pool = calloc((size_t)o->concurrency, sizeof *c->pool);
  if (!c->base_url || !c->id_field || !c->ext_field || !c->ext_field_enc || !c->pool)
    return ferry_error_set(err, FERRY_ENOMEM, "out of memory creating the cloud client");
  c->concurrency = o->concurrency;
  c->timeout_ms = o->timeout_ms;
  c->max_attempts = o->max_attempts;
  c->rate_limit = o->rate_limit;
  c->backoff_base_ms = o->backoff_base_ms;
  c->backoff_cap_ms = o->backoff_cap_ms;
  c->rng = o->seed ? o->seed : (uint64_t)cloud_now_us() ^ ((uint64_t)getpid() << 32);
  return FERRY_OK;
}

ferry_status ferry_cloud_create(ferry_cloud **out, struct event_base *base,
                                const ferry_cloud_opts *opts, ferry_error *err) {
  ferry_status st = FERRY_OK;
  ferry_cloud *c = NULL;
  *out = NULL;
  if ((st = check_opts(opts, err))) goto done;
  c = calloc(1, sizeof *c);
  if (!c) {
    st = ferry_error_set(err, FERRY_ENOMEM, "out of memory creating the cloud client");
    goto done;
  }
  c->base = base;
  if ((st = copy_opts(c, opts, err))) goto done;
  if ((st = curl_loop_create(&c->loop, base, opts->concurrency, on_transfer_done, c, err)))
    goto done;
  if ((st = request_headers_init(c, opts->token, err))) goto done;
  c->rate_timer = evtimer_new(base, on_rate_timer, c);
  if (!c->rate_timer) st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
done:
  if (st)
    ferry_cloud_destroy(c);
  else
    *out = c;
  return st;
}

ferry_status ferry_cloud_create_for(ferry_cloud **out, struct event_base *base,
                                    const ferry_config *cfg, const char *customer,
                                    ferry_error *err) {
  ferry_status st = FERRY_OK;
  ferry_cloud_opts o;
  char *url = NULL;
  *out = NULL;
  ferry_cloud_opts_init(&o);
  const char *env = ferry_config_token_env(cfg, customer);
  if (env) {
    o.token = ferry_config_secret(env);
    if (!o.token || !*o.token) {
      st = ferry_error_set(err, FERRY_EAUTH, "the cloud token variable %s is not set", env);
      goto done;
    }
  }
  url = ferry_config_base_url(cfg, customer);
  if (!url) {
    st = ferry_customer_valid(customer)
             ? ferry_error_set(err, FERRY_ENOMEM, "out of memory")
             : ferry_error_set(err, FERRY_EINVAL, "invalid customer id '%.128s'", customer);
    goto done;
  }
  o.base_url = url;
  if (cfg->cloud.id_field) o.id_field = cfg->cloud.id_field;
  if (cfg->cloud.external_key_field) o.external_key_field = cfg->cloud.external_key_field;
  if (cfg->cloud.concurrency > 0) o.concurrency = cfg->cloud.concurrency;
  if (cfg->cloud.timeout_ms > 0) o.timeout_ms = cfg->cloud.timeout_ms;
  if (cfg->cloud.max_attempts > 0) o.max_attempts = cfg->cloud.max_attempts;
  o.rate_limit = cfg->cloud.rate_limit;
  st = ferry_cloud_create(out, base, &o, err);
done:
  free(url);
  return st;
}

void ferry_cloud_destroy(ferry_cloud *c) {
  if (!c) return;
  while (c->ops) {
    cloud_op *op = c->ops;
    unlink_op(c, op);
    op_free(op); /* takes a running transfer out of the multi first */
  }
  for (int i = 0; i < c->npool; i++)
    curl_easy_cleanup(c->pool[i]);
  free(c->pool);
  curl_slist_free_all(c->hdr_plain);
  curl_slist_free_all(c->hdr_json);
  if (c->auth_header) {
    volatile char *p = c->auth_header; /* the token should not outlive the client */
    while (*p)
      *p++ = 0;
    free(c->auth_header);
  }
  curl_loop_destroy(c->loop);
  if (c->rate_timer) event_free(c->rate_timer);
  curl_free(c->ext_field_enc);
  free(c->ext_field);
  free(c->id_field);
  free(c->base_url);
  free(c);
}

ferry_status ferry_cloud_submit(ferry_cloud *c, const ferry_cloud_request *req,
                                ferry_cloud_done_fn done, void *arg, ferry_error *err) {
  ferry_status st = FERRY_OK;
  cloud_op *op = NULL;
  if (c->winding_down) {
    st = ferry_error_set(err, FERRY_ECLOUD, "the cloud client is stopping");
    goto done;
  }
  op = calloc(1, sizeof *op);
  if (!op || !(op->timer = evtimer_new(c->base, on_op_timer, op))) {
    st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
    goto done;
  }
  op->c = c;
  op->kind = req->op;
  op->done = done;
  op->arg = arg;
  op->started_us = cloud_now_us();
  op->step =
      (req->op == FERRY_CLOUD_CREATE && req->resume) || (req->op == FERRY_CLOUD_DELETE && !req->id)
          ? STEP_FIND
          : STEP_MAIN;
  op->maybe_committed = req->op == FERRY_CLOUD_CREATE && req->resume;
  if ((st = request_prepare(c, op, req, err))) goto done;
  if (req->op == FERRY_CLOUD_CREATE || req->op == FERRY_CLOUD_PATCH) {
    op->body = json_is_object(req->body) ? ferry_json_dump(req->body, 0) : NULL;
    if (!op->body) {
      st = json_is_object(req->body)
               ? ferry_error_set(err, FERRY_ENOMEM, "out of memory")
               : ferry_error_set(err, FERRY_EINVAL, "the body must be a JSON object");
      goto done;
    }
  }
  op->next = c->ops;
  if (c->ops) c->ops->prev = op;
  c->ops = op;
  c->pending++;
  enqueue(c, op, false);
  op = NULL;
  pump(c);
done:
  op_free(op);
  return st;
}

void ferry_cloud_wind_down(ferry_cloud *c) {
  if (!c || c->winding_down) return;
  c->winding_down = true;
  for (cloud_op *op = c->ops; op; op = op->next) {
    if (op->state == OP_QUEUED) {
      dequeue(c, op);
      cancel(op);
    } else if (op->state == OP_WAITING) {
      evtimer_del(op->timer);
      cancel(op);
    }
  }
}

unsigned ferry_cloud_pending(const ferry_cloud *c) {
  return c ? c->pending : 0;
}

unsigned ferry_cloud_concurrency(const ferry_cloud *c) {
  return (unsigned)c->concurrency;
}

void ferry_cloud_stats_get(const ferry_cloud *c, ferry_cloud_stats *s) {
  *s = c->stats;
}

void ferry_cloud_idempotency_key(char out[33], const char *customer, const char *entity,
                                 const char *key, uint64_t generation) {
  XXH3_state_t st;
  char gen[24];
  int n = snprintf(gen, sizeof gen, "%llu", (unsigned long long)generation);
  XXH3_128bits_reset(&st);
  XXH3_128bits_update(&st, customer, strlen(customer) + 1); /* each with its \0 */
  XXH3_128bits_update(&st, entity, strlen(entity) + 1);
  XXH3_128bits_update(&st, key, strlen(key) + 1);
  XXH3_128bits_update(&st, gen, (size_t)n);
  XXH128_hash_t h = XXH3_128bits_digest(&st);
  snprintf(out, 33, "%016llx%016llx", (unsigned long long)h.high64, (unsigned long long)h.low64);
}
