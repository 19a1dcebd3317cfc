/*
 * ferry_batch: the public face of the ingest decoders (ferry/change.h). It
 * runs the NDJSON or protobuf decoder over the input, on two threads for a
 * large batch (NDJSON split at a line boundary, protobuf by change count,
 * merged back in input order), and turns "some changes are invalid" into
 * FERRY_EINVAL with a one-line summary unless the caller asked to skip them.
 */
#include "ingest/batch.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ingest/part.h"

struct ferry_batch {
  ingest_part parts[2]; /* parts[1] holds the second half of a split batch */
  int nparts;
  const ferry_change_ref *refs; /* parts[0]'s, or merged into owned_refs */
  size_t nrefs;
  const ferry_change_error *errs;
  size_t nerrs;
  uint64_t invalid;
  ferry_change_ref *owned_refs;
  ferry_change_error *owned_errs;
};

typedef struct job {
  ingest_part *p;
  ferry_format fmt;
  const char *buf;
  size_t len;
  size_t first, count; /* protobuf: the changes of the batch this job decodes */
  ferry_status st;
} job;

static void *run_job(void *arg) {
  job *j = arg;
  if (j->fmt == FERRY_FORMAT_NDJSON)
    j->st = ingest_ndjson_decode(j->p, j->buf, j->len);
  else
    j->st = ingest_protobuf_decode_range(j->p, j->buf, j->len, j->first, j->count);
  return NULL;
}

/* Where the second half of an NDJSON buffer starts: just past the first
 * newline after the middle; len if there is none. */
static size_t split_point(const char *buf, size_t len) {
  const char *nl = memchr(buf + len / 2, '\n', len - len / 2);
  return nl ? (size_t)(nl - buf) + 1 : len;
}

static int choose_threads(size_t len, int threads) {
  if (threads > 0) return threads > 2 ? 2 : threads;
  return len >= INGEST_PARALLEL_MIN && sysconf(_SC_NPROCESSORS_ONLN) >= 2 ? 2 : 1;
}

/* Splits the input between two jobs (or leaves it all to the first): NDJSON
 * at a line boundary, protobuf by change count once the batch is checked. */
static ferry_status plan(ferry_batch *b, job jobs[2], int threads) {
  ferry_status st = FERRY_OK;
  size_t len = jobs[0].len, changes = 0;
  if (jobs[0].fmt == FERRY_FORMAT_NDJSON) {
    size_t split = threads > 1 ? split_point(jobs[0].buf, len) : len;
    jobs[0].len = split;
    jobs[1].buf += split;
    jobs[1].len = len - split;
    b->nparts = split < len ? 2 : 1;
    return FERRY_OK;
  }
  st = ingest_protobuf_check(jobs[0].p, jobs[0].buf, len, &changes);
  b->nparts = threads > 1 && changes >= 2 ? 2 : 1;
  jobs[0].count = b->nparts == 2 ? changes / 2 : changes;
  jobs[1].first = jobs[0].count;
  jobs[1].count = changes - jobs[0].count;
  return st;
}

/* Decodes into b->parts, in two halves when asked to. */
static ferry_status run(ferry_batch *b, ferry_format fmt, const char *buf, size_t len,
                        const ferry_decode_opts *opts, int threads, bool slow_only) {
  job jobs[2] = {{&b->parts[0], fmt, buf, len, 0, 0, FERRY_OK},
                 {&b->parts[1], fmt, buf, len, 0, 0, FERRY_OK}};
  for (int i = 0; i < 2; i++) {
    ingest_part_init(&b->parts[i], opts, len);
    b->parts[i].slow_only = slow_only;
  }
  ferry_status st = plan(b, jobs, threads);
  if (st || b->nparts == 1) {
    if (!st) run_job(&jobs[0]);
    return st ? st : jobs[0].st;
  }
  /* jansson seeds its hash function on first use; do it before there are two threads */
  json_object_seed(0);
  pthread_t t;
  bool started = pthread_create(&t, NULL, run_job, &jobs[1]) == 0;
  run_job(&jobs[0]);
  if (started)
    pthread_join(t, NULL);
  else
    run_job(&jobs[1]); /* no thread to be had: do it here */
  return jobs[0].st ? jobs[0].st : jobs[1].st;
}

/* Puts both halves' refs and errors into one list each, in input order. */
static ferry_status merge(ferry_batch *b) {
  ingest_part *p0 = &b->parts[0], *p1 = &b->parts[1];
  b->refs = p0->refs;
  b->nrefs = p0->nrefs;
  b->errs = p0->errs;
  b->nerrs = p0->nerrs;
  b->invalid = p0->invalid;
  if (b->nparts == 1) return FERRY_OK;
  b->invalid += p1->invalid;
  for (size_t i = 0; i < p1->nerrs; i++)
    p1->errs[i].line += p0->units;
  if (p1->nrefs) {
    if (!(b->owned_refs = malloc((p0->nrefs + p1->nrefs) * sizeof *b->owned_refs)))
      return FERRY_ENOMEM;
    if (p0->nrefs) memcpy(b->owned_refs, p0->refs, p0->nrefs * sizeof *p0->refs);
    memcpy(b->owned_refs + p0->nrefs, p1->refs, p1->nrefs * sizeof *p1->refs);
    b->refs = b->owned_refs;
    b->nrefs += p1->nrefs;
  }
  size_t more = p0->max_errors - p0->nerrs; /* room left in the listing */
  if (more > p1->nerrs) more = p1->nerrs;
  if (more) {
    if (!(b->owned_errs = malloc((p0->nerrs + more) * sizeof *b->owned_errs))) return FERRY_ENOMEM;
    if (p0->nerrs) memcpy(b->owned_errs, p0->errs, p0->nerrs * sizeof *p0->errs);
    memcpy(b->owned_errs + p0->nerrs, p1->errs, more * sizeof *p1->errs);
    b->errs = b->owned_errs;
    b->nerrs += more;
  }
  return FERRY_OK;
}

/* "3 invalid changes; first: line 17: version: must be >= 1" */
static ferry_status summarise(const ferry_batch *b, ferry_format fmt, ferry_error *err) {
  const ferry_change_error *e = &b->errs[0];
  char where[48];
  if (e->line == 0)
    snprintf(where, sizeof where, "the batch");
  else
    snprintf(where, sizeof where, "%s %llu", fmt == FERRY_FORMAT_NDJSON ? "line" : "change",
             (unsigned long long)e->line);
  if (b->invalid == 1)
    return ferry_error_set(err, FERRY_EINVAL, "1 invalid change: %s: %s%s%s", where, e->field,
                           e->field[0] ? ": " : "", e->reason);
  return ferry_error_set(err, FERRY_EINVAL, "%llu invalid changes; first: %s: %s%s%s",
                         (unsigned long long)b->invalid, where, e->field, e->field[0] ? ": " : "",
                         e->reason);
}

static ferry_status fail(ferry_status st, ferry_error *err) {
  if (st == FERRY_ENOMEM) return ferry_error_set(err, st, "out of memory decoding the batch");
  if (st == FERRY_ETOOBIG)
    return ferry_error_set(err, st, "the batch decodes to more than its size limit");
  return ferry_error_set(err, st, "decoding the batch: %s", ferry_strerror(st));
}

ferry_status ingest_batch_decode(ferry_format fmt, const char *buf, size_t len,
                                 const ferry_decode_opts *opts, const ingest_tuning *tune,
                                 ferry_batch **out, ferry_error *err) {
  ferry_status st = FERRY_OK;
  int threads = tune ? tune->threads : 0;
  bool slow_only = tune ? tune->slow_only : false;
  ferry_batch *b = NULL;
  *out = NULL;
  if (fmt != FERRY_FORMAT_NDJSON && fmt != FERRY_FORMAT_PROTOBUF) {
    st = ferry_error_set(err, FERRY_EINVAL, "unknown input format %d", (int)fmt);
    goto done;
  }
  if (!buf && len) {
    st = ferry_error_set(err, FERRY_EINVAL, "no input buffer");
    goto done;
  }
  if (!(b = calloc(1, sizeof *b))) {
    st = fail(FERRY_ENOMEM, err);
    goto done;
  }
  if ((st = run(b, fmt, buf ? buf : "", len, opts, choose_threads(len, threads), slow_only)) ||
      (st = merge(b))) {
    fail(st, err);
    goto done;
  }
  if (b->invalid && !(opts && opts->skip_invalid)) {
    /* the caller must append nothing; an empty change list makes sure */
    b->nrefs = 0;
    st = summarise(b, fmt, err);
  }

done:
  if (st && st != FERRY_EINVAL) {
    ferry_batch_free(b);
    b = NULL;
  }
  *out = b;
  return st;
}

ferry_status ferry_batch_decode(ferry_format fmt, const char *buf, size_t len,
                                const ferry_decode_opts *opts, ferry_batch **out,
                                ferry_error *err) {
  return ingest_batch_decode(fmt, buf, len, opts, NULL, out, err);
}

size_t ferry_batch_count(const ferry_batch *b) {
  return b ? b->nrefs : 0;
}

const ferry_change_ref *ferry_batch_changes(const ferry_batch *b) {
  return b ? b->refs : NULL;
}

size_t ferry_batch_error_count(const ferry_batch *b) {
  return b ? b->nerrs : 0;
}

uint64_t ferry_batch_invalid_total(const ferry_batch *b) {
  return b ? b->invalid : 0;
}

const ferry_change_error *ferry_batch_errors(const ferry_batch *b) {
  return b ? b->errs : NULL;
}

void ferry_batch_free(ferry_batch *b) {
  if (!b) return;
  for (int i = 0; i < 2; i++)
    ingest_part_free(&b->parts[i]);
  free(b->owned_refs);
  free(b->owned_errs);
  free(b);
}
