/* ferry-cloudsim HTTP side: the evhttp server (server.c: listening, dispatch, faults, latency,
 * statistics and the /_ admin routes) and the REST routes on collections and records (routes.c).
 *
 * The loop thread owns everything here; there are no other threads.
 */
#ifndef CLOUDSIM_HTTP_H
#define CLOUDSIM_HTTP_H

#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <stdint.h>

#include "faults.h"
#include "options.h"
#include "store.h"

typedef struct cs_server cs_server;

/* Starts serving cfg->listen on base. store and cfg are borrowed and must outlive the server;
 * token (NULL: no auth) likewise. On success *port is the port actually bound. Returns 0, or -1
 * with a reason in err. */
int cs_server_start(cs_server **out, struct event_base *base, cs_store *store, const cs_config *cfg,
                    const char *token, unsigned *port, char *err, size_t errlen);
/* Stops listening, drops held answers and open connections, frees the server; accepts NULL. */
void cs_server_stop(cs_server *s);

/* ---- shared between server.c and routes.c ---- */

enum { CS_M_GET, CS_M_POST, CS_M_PUT, CS_M_PATCH, CS_M_DELETE, CS_M_OTHER, CS_N_METHODS };

typedef struct {
  uint64_t total, connections;
  uint64_t by_method[CS_N_METHODS];
  uint64_t by_status[600];
  uint64_t dropped, failed, throttled, commit_dropped, replayed, conflicts;
  json_t *accounts; /* account -> [requests in flight now, most in flight at once] */
} cs_stats;

struct cs_server {
  struct event_base *base;
  struct evhttp *http;
  cs_store *store;
  const cs_config *cfg;
  const char *token;
  cs_faults faults;
  cs_holdq held;
  cs_stats stats;
};

/* Where a collection request points, worked out from its path (see docs/cloudsim.md):
 * coll is the collection path, id the record id or NULL for the collection itself, account
 * the scope used for idempotency keys and in-flight counts. status is non-zero (400/404/405) when
 * the path or method cannot be served. */
typedef struct {
  const char *coll;
  const char *id;
  const char *account;
  int status;
} cs_target;

/* Serves one collection or record request whose faults and auth have been dealt with: writes the
 * answer body into req's output buffer and returns its status. */
int cs_routes_serve(cs_server *s, struct evhttp_request *req, enum evhttp_cmd_type cmd,
                    const cs_target *t, const char *query);

/* Writes {"error": msg} (msg must need no JSON escaping) and returns status. */
int cs_reply_error(struct evhttp_request *req, int status, const char *msg);
/* Writes v as compact JSON and returns status, or 500 if it could not be written. */
int cs_reply_json(struct evhttp_request *req, int status, const json_t *v);

#endif
