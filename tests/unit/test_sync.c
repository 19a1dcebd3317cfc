/*
 * Tests for the sync driver (src/cloud/sync.c) against an in-process cloud
 * that looks into ferry's store as each request arrives.
 *
 * The rule under test: a create is never sent before its create intent is
 * written. The intents of a planned chunk are written (and the WAL synced)
 * on the writer thread while the loop goes on with calls already queued, so
 * the chunk's creates must wait for that write. The cloud here runs its own
 * event loop on a thread and, for every POST, reads the entity's applied
 * record through the same store handle: it must already say CREATING, with
 * the generation the Idempotency-Key was derived from. (A kill -9 cannot
 * catch a create sent a millisecond early; this test can.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include "ferry/change.h"
#include "ferry/cloud.h"
#include "ferry/mapping.h"
#include "ferry/projector.h"
#include "ferry/store.h"
#include "ferry/v1/state.pb-c.h"
#include "projector/keys.h"

static const char MAPPING[] = "version: 1\n"
                              "entities:\n"
                              "  contact:\n"
                              "    endpoint: /contacts\n"
                              "    source: Contacts\n"
                              "    fields:\n"
                              "      name: Name\n";

/* ---- the cloud: evhttp on a thread of its own ------------------------------ */

typedef struct cloud {
  ferry_store *store; /* read only, from the cloud's thread */
  struct event_base *base;
  struct evhttp *http;
  pthread_t thread;
  unsigned port;
  /* written by the cloud's thread; read after it is joined */
  unsigned posts, early;
  char first_early[160];
} cloud;

static void reply(struct evhttp_request *req, int code, const char *body) {
  struct evbuffer *out = evbuffer_new();
  evbuffer_add(out, body, strlen(body));
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
  evhttp_send_reply(req, code, code == 201 ? "Created" : "OK", out);
  evbuffer_free(out);
}

/* Whether the store holds the create intent that key names for entity/ekey. */
static bool intent_written(cloud *c, const char *ekey, const char *idem) {
  ferry_key k;
  char *val = NULL;
  size_t vlen = 0;
  ferry_error err;
  ferry_key_entity(&k, "contact", ekey);
  if (ferry_kv_get(c->store, FERRY_CF_APPLIED, "acme", k.b, k.len, &val, &vlen, &err)) return false;
  Ferry__V1__AppliedEntity *a = ferry__v1__applied_entity__unpack(NULL, vlen, (uint8_t *)val);
  free(val);
  if (!a) return false;
  char want[33];
  ferry_cloud_idempotency_key(want, "acme", "contact", ekey, a->create_generation);
  bool ok = a->state == FERRY__V1__ENTITY_STATE__ENTITY_STATE_CREATING &&
            a->create_generation > 0 && idem && strcmp(idem, want) == 0;
  ferry__v1__applied_entity__free_unpacked(a, NULL);
  return ok;
}

static void on_request(struct evhttp_request *req, void *arg) {
  cloud *c = arg;
  if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) { /* a lookup: nothing there */
    reply(req, 200, "[]");
    return;
  }
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t n = evbuffer_get_length(in);
  char *text = malloc(n + 1);
  evbuffer_remove(in, text, n);
  text[n] = '\0';
  json_t *body = json_loads(text, 0, NULL);
  free(text);
  const char *ext = json_string_value(json_object_get(body, "legacy_key")); /* contact/<key> */
  const char *idem = evhttp_find_header(evhttp_request_get_input_headers(req), "Idempotency-Key");
  c->posts++;
  if (!ext || strncmp(ext, "contact/", 8) != 0 || !intent_written(c, ext + 8, idem)) {
    if (c->early++ == 0)
      snprintf(c->first_early, sizeof c->first_early, "%s (Idempotency-Key %s)",
               ext ? ext : "(no external key)", idem ? idem : "none");
  }
  json_decref(body);
  char id[32];
  snprintf(id, sizeof id, "{\"id\":%u}", c->posts);
  reply(req, 201, id);
}

static void *cloud_main(void *arg) {
  cloud *c = arg;
  event_base_dispatch(c->base);
  return NULL;
}

static void cloud_start(cloud *c, ferry_store *store) {
  memset(c, 0, sizeof *c);
  c->store = store;
  assert_non_null(c->base = event_base_new());
  assert_non_null(c->http = evhttp_new(c->base));
  evhttp_set_gencb(c->http, on_request, c);
  evhttp_set_allowed_methods(c->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
  struct evhttp_bound_socket *s = evhttp_bind_socket_with_handle(c->http, "127.0.0.1", 0);
  assert_non_null(s);
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  assert_int_equal(getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&ss, &len), 0);
  c->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  assert_int_equal(pthread_create(&c->thread, NULL, cloud_main, c), 0);
}

static void cloud_stop(cloud *c) {
  event_base_loopbreak(c->base); /* libevent_pthreads: safe from this thread */
  pthread_join(c->thread, NULL);
  evhttp_free(c->http);
  event_base_free(c->base);
}

/* ---- the customer ---------------------------------------------------------- */

static void ingest(ferry_store *s, unsigned n) {
  size_t cap = (size_t)n * 96 + 1, len = 0;
  char *buf = malloc(cap);
  ferry_batch *b = NULL;
  ferry_error err;
  ferry_append_result res;
  for (unsigned i = 1; i <= n; i++)
    len += (size_t)snprintf(buf + len, cap - len,
                            "{\"table\":\"Contacts\",\"key\":%u,\"op\":\"upsert\",\"version\":1,"
                            "\"row\":{\"Name\":\"N%u\"}}\n",
                            i, i);
  ferry_decode_opts o = {"acme", false, 0};
  assert_int_equal(ferry_batch_decode(FERRY_FORMAT_NDJSON, buf, len, &o, &b, &err), FERRY_OK);
  assert_int_equal(
      ferry_store_append(s, "acme", ferry_batch_changes(b), ferry_batch_count(b), &res, &err),
      FERRY_OK);
  ferry_batch_free(b);
  free(buf);
}

/* Several chunks (a chunk is 1,024 calls at concurrency 16), so the calls of
 * one chunk are still on the wire while the next chunk's intents are written. */
static void test_no_create_before_its_intent(void **state) {
  (void)state;
  enum { N = 5000 };
  char dir[] = "/tmp/ferry-test-sync-XXXXXX", url[64];
  ferry_store *store = NULL;
  ferry_mapping *map = NULL;
  ferry_projector *p = NULL;
  ferry_cloud *client = NULL;
  ferry_error err;
  cloud c;
  assert_non_null(mkdtemp(dir));
  assert_int_equal(ferry_store_open(&store, dir, FERRY_STORE_WRITE, &err), FERRY_OK);
  assert_int_equal(ferry_mapping_load_buffer(&map, "m.yaml", MAPPING, strlen(MAPPING), &err),
                   FERRY_OK);
  ferry_projector_opts po = {0};
  assert_int_equal(ferry_projector_open(&p, store, map, "acme", &po, false, &err), FERRY_OK);
  ingest(store, N);
  assert_int_equal(ferry_projector_fold(p, NULL, NULL, NULL, &err), FERRY_OK);
  cloud_start(&c, store);

  struct event_base *base = event_base_new();
  ferry_cloud_opts co;
  ferry_cloud_opts_init(&co);
  snprintf(url, sizeof url, "http://127.0.0.1:%u/acme", c.port);
  co.base_url = url;
  assert_int_equal(ferry_cloud_create(&client, base, &co, &err), FERRY_OK);
  ferry_sync_report rep;
  ferry_status st = ferry_sync_run(base, "acme", p, client, NULL, &rep, &err);
  cloud_stop(&c);
  if (st) fail_msg("sync: %s", err.msg);
  assert_int_equal(rep.created, N);
  assert_int_equal(c.posts, N);
  if (c.early)
    fail_msg("%u of %u creates reached the cloud before their intent, first %s", c.early, c.posts,
             c.first_early);

  ferry_cloud_destroy(client);
  event_base_free(base);
  ferry_projector_close(p);
  ferry_mapping_free(map);
  ferry_store_close(store);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  evthread_use_pthreads();
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_create_before_its_intent),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
