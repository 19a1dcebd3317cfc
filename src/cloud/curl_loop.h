/*
 * libcurl's multi-socket API driven by a libevent event_base, after curl's
 * docs/examples/hiperfifo.c: curl tells us which sockets to watch and when its
 * next timeout is due (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION); we
 * turn those into libevent events, and hand socket readiness and timeouts back
 * with curl_multi_socket_action. Nothing polls and nothing blocks the loop.
 *
 * The multi handle keeps the connection cache, so every transfer added here
 * can reuse a connection an earlier one left open.
 */
#ifndef FERRY_CLOUD_CURL_LOOP_H
#define FERRY_CLOUD_CURL_LOOP_H

#include <curl/curl.h>

#include "ferry/ferry.h"

struct event_base;

typedef struct curl_loop curl_loop;

/* Called from the loop when a transfer ended (rc is its CURLcode). The easy
 * handle has already been removed from the multi handle and is the callee's
 * again; it may add new transfers. */
typedef void (*curl_loop_done_fn)(void *arg, CURL *easy, CURLcode rc);

/* max_host_conns caps the connections to one host (and the cache keeps that
 * many open). */
ferry_status curl_loop_create(curl_loop **out, struct event_base *base, long max_host_conns,
                              curl_loop_done_fn done, void *arg, ferry_error *err);

/* Starts a transfer; the easy handle stays the caller's, borrowed until done. */
ferry_status curl_loop_add(curl_loop *l, CURL *easy, ferry_error *err);

/* Takes a running transfer out before it ends (its done is never called). */
void curl_loop_remove(curl_loop *l, CURL *easy);

/* Frees the loop: transfers still running are removed unfinished (their easy
 * handles stay the caller's to clean up). Accepts NULL. */
void curl_loop_destroy(curl_loop *l);

#endif
