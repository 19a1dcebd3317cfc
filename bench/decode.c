/*
 * Decoder throughput: generates N NDJSON changes shaped like the ones the
 * integration tests use (~200-byte rows), decodes them on one thread and on
 * two, with the fast path and without, then decodes the same changes as one
 * protobuf ChangeBatch on one thread and on two, printing changes per second. Usage: bench_decode
 * [N] (default 1000000).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ferry/change.h"
#include "ingest/batch.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *make_ndjson(size_t n, size_t *len) {
  size_t cap = n * 320 + 1;
  char *buf = malloc(cap);
  if (!buf) return NULL;
  size_t at = 0;
  for (size_t i = 1; i <= n; i++)
    at += (size_t)snprintf(
        buf + at, cap - at,
        "{\"table\":\"Contacts\",\"key\":%zu,\"op\":\"upsert\",\"version\":1,\"id\":\"b-%zu\","
        "\"at\":\"2026-11-24T10:00:00Z\",\"row\":{\"ContactID\":%zu,\"FirstName\":\"Name%zu\","
        "\"Surname\":\"Surname%zu\",\"Email\":\"person%zu@example.com\",\"Street\":\"%zu Long "
        "Street Name\",\"IsArchived\":false,\"Score\":%zu.5,\"Notes\":null}}\n",
        i, i, i, i, i, i, i, i);
  *len = at;
  return buf;
}

/* A ChangeBatch holding the packed changes of b: field 2, one per change. */
static char *make_protobuf(const ferry_batch *b, size_t *len) {
  const ferry_change_ref *c = ferry_batch_changes(b);
  size_t n = ferry_batch_count(b), cap = 0, at = 0;
  for (size_t i = 0; i < n; i++)
    cap += c[i].pb_len + 11;
  char *buf = malloc(cap + 1);
  if (!buf) return NULL;
  for (size_t i = 0; i < n; i++) {
    buf[at++] = 0x12;
    for (size_t v = c[i].pb_len;; v >>= 7) {
      buf[at++] = (char)(v >= 0x80 ? (v & 0x7F) | 0x80 : v);
      if (v < 0x80) break;
    }
    memcpy(buf + at, c[i].pb, c[i].pb_len);
    at += c[i].pb_len;
  }
  *len = at;
  return buf;
}

static int run(const char *what, ferry_format fmt, const char *buf, size_t len, ingest_tuning tune,
               size_t want, ferry_batch **keep) {
  ferry_decode_opts opts = {"acme", false, 0};
  ferry_batch *b = NULL;
  ferry_error err;
  double best = 0;
  for (int round = 0; round < 3; round++) {
    double t0 = now();
    ferry_status st = ingest_batch_decode(fmt, buf, len, &opts, &tune, &b, &err);
    double dt = now() - t0;
    if (st || ferry_batch_count(b) != want) {
      fprintf(stderr, "%s: decode failed: %s\n", what, st ? err.msg : "wrong count");
      ferry_batch_free(b);
      return 1;
    }
    if (best == 0 || dt < best) best = dt;
    if (keep && round == 2)
      *keep = b;
    else
      ferry_batch_free(b);
  }
  printf("%-22s %9zu changes %7.1f MB  best of 3: %.3f s  %10.0f changes/s  %6.1f MB/s\n", what,
         want, (double)len / 1e6, best, (double)want / best, (double)len / 1e6 / best);
  return 0;
}

int main(int argc, char **argv) {
  size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
  size_t len, pblen;
  ferry_batch *keep = NULL;
  int rc = 1;
  char *pb = NULL, *nd = make_ndjson(n, &len);
  if (!nd) goto done;
  static const struct {
    const char *what;
    ingest_tuning tune;
  } nd_runs[] = {{"ndjson jansson, 1 thr", {1, true}},
                 {"ndjson jansson, 2 thr", {2, true}},
                 {"ndjson, 1 thread", {1, false}},
                 {"ndjson, 2 threads", {2, false}},
                 {"ndjson, default", {0, false}}};
  for (size_t i = 0; i < sizeof nd_runs / sizeof nd_runs[0]; i++)
    if (run(nd_runs[i].what, FERRY_FORMAT_NDJSON, nd, len, nd_runs[i].tune, n,
            i + 1 == sizeof nd_runs / sizeof nd_runs[0] ? &keep : NULL))
      goto done;
  if (!(pb = make_protobuf(keep, &pblen))) goto done;
  if (run("protobuf, 1 thread", FERRY_FORMAT_PROTOBUF, pb, pblen, (ingest_tuning){1, false}, n,
          NULL) ||
      run("protobuf, 2 threads", FERRY_FORMAT_PROTOBUF, pb, pblen, (ingest_tuning){2, false}, n,
          NULL))
    goto done;
  rc = 0;
done:
  ferry_batch_free(keep);
  free(pb);
  free(nd);
  return rc;
}
