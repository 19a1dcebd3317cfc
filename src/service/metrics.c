/*
 * Metrics: plain counters kept by the loop thread as things happen (no
 * locks, no timers), rendered in the Prometheus text exposition format
 * (version 0.0.4) when GET /metrics asks. Per-customer series read the
 * customer table; the store's group-commit counters come from the store.
 *
 * ferry_customer_concurrent_runs_max is the proof of the scheduler's promise:
 * the most runs any one customer ever had at once, which must stay 1.
 */
#include <event2/buffer.h>
#include <inttypes.h>
#include <string.h>

#include "service/service.h"

/* Upper bounds in seconds; the last bucket is +Inf. */
static const double bounds[SVC_HIST_BUCKETS - 1] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                    0.25,  0.5,    1,     2.5,  5,     10};

void svc_hist_observe(svc_hist *h, double seconds) {
  size_t i = 0;
  while (i < SVC_HIST_BUCKETS - 1 && seconds > bounds[i])
    i++;
  h->bucket[i]++;
  h->count++;
  h->sum += seconds;
}

static int method_index(const char *m) {
  if (!m) return SVC_M_OTHER;
  if (strcmp(m, "POST") == 0) return SVC_M_POST;
  if (strcmp(m, "PATCH") == 0) return SVC_M_PATCH;
  if (strcmp(m, "DELETE") == 0) return SVC_M_DELETE;
  if (strcmp(m, "GET") == 0) return SVC_M_GET;
  return SVC_M_OTHER;
}

static const char *const method_names[SVC_M_COUNT] = {"POST", "PATCH", "DELETE", "GET", "other"};

void svc_metrics_call(svc_metrics *m, const char *method, int status, int64_t latency_us) {
  if (status < 0 || status >= 600) status = 0;
  m->calls[method_index(method)][status]++;
  svc_hist_observe(&m->call_latency, (double)latency_us / 1e6);
}

static void head(struct evbuffer *out, const char *name, const char *type, const char *help) {
  evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void hist(struct evbuffer *out, const char *name, const char *help, const svc_hist *h) {
  uint64_t cum = 0;
  head(out, name, "histogram", help);
  for (size_t i = 0; i < SVC_HIST_BUCKETS - 1; i++) {
    cum += h->bucket[i];
    evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, bounds[i], cum);
  }
  evbuffer_add_printf(out,
                      "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.6f\n%s_count %" PRIu64 "\n",
                      name, h->count, name, h->sum, name, h->count);
}

static void counter(struct evbuffer *out, const char *name, const char *help, uint64_t v) {
  head(out, name, "counter", help);
  evbuffer_add_printf(out, "%s %" PRIu64 "\n", name, v);
}

static void gauge(struct evbuffer *out, const char *name, const char *help, uint64_t v) {
  head(out, name, "gauge", help);
  evbuffer_add_printf(out, "%s %" PRIu64 "\n", name, v);
}

/* One family with a series per customer; field picks the value. */
typedef uint64_t (*cust_field)(const svc_cust *c);
static uint64_t f_appended(const svc_cust *c) {
  return c->appended;
}
static uint64_t f_duplicates(const svc_cust *c) {
  return c->duplicates;
}
static uint64_t f_lag(const svc_cust *c) {
  return c->head_seq > c->folded_seq ? c->head_seq - c->folded_seq : 0;
}
static uint64_t f_dirty(const svc_cust *c) {
  return c->dirty;
}
static uint64_t f_failed(const svc_cust *c) {
  return c->failed;
}
static uint64_t f_runs(const svc_cust *c) {
  return c->runs;
}
static uint64_t f_run_failures(const svc_cust *c) {
  return c->run_failures;
}
static uint64_t f_running(const svc_cust *c) {
  return c->active;
}
static uint64_t f_active_max(const svc_cust *c) {
  return c->active_max;
}
static uint64_t f_blocked(const svc_cust *c) {
  return c->blocked;
}

static void per_customer(svc *s, struct evbuffer *out, const char *name, const char *type,
                         const char *help, cust_field f) {
  head(out, name, type, help);
  for (size_t i = 0; i < s->custs.count; i++) {
    const svc_cust *c = s->custs.entries[i].val;
    if (c) evbuffer_add_printf(out, "%s{customer=\"%s\"} %" PRIu64 "\n", name, c->id, f(c));
  }
}

static void customers(svc *s, struct evbuffer *out) {
  per_customer(s, out, "ferry_customer_changes_ingested_total", "counter",
               "Changes appended to the customer's log by this process.", f_appended);
  per_customer(s, out, "ferry_customer_duplicates_total", "counter",
               "Changes dropped as duplicates (their id was already in the log).", f_duplicates);
  per_customer(s, out, "ferry_customer_fold_lag_events", "gauge",
               "Events in the log not yet folded into the projection.", f_lag);
  per_customer(s, out, "ferry_customer_dirty_entities", "gauge",
               "Entities whose cloud state differs from the desired state.", f_dirty);
  per_customer(s, out, "ferry_customer_failed_entities", "gauge", "Entities the cloud refused.",
               f_failed);
  per_customer(s, out, "ferry_customer_runs_total", "counter", "Runs (fold, then apply) ended.",
               f_runs);
  per_customer(s, out, "ferry_customer_run_failures_total", "counter",
               "Runs that ended in error (retried after a backoff).", f_run_failures);
  per_customer(s, out, "ferry_customer_runs_in_progress", "gauge",
               "Runs of the customer going on now (0 or 1).", f_running);
  per_customer(s, out, "ferry_customer_concurrent_runs_peak", "gauge",
               "The most runs of the customer ever going on at once (must be 1).", f_active_max);
  per_customer(s, out, "ferry_customer_blocked", "gauge",
               "1 while the mapping changed and the customer waits for a replay.", f_blocked);
}

static void calls(svc *s, struct evbuffer *out) {
  const svc_metrics *m = &s->metrics;
  head(out, "ferry_cloud_calls_total", "counter",
       "Cloud calls ended, by method and HTTP status of the last answer (0: none).");
  for (int i = 0; i < SVC_M_COUNT; i++)
    for (int st = 0; st < 600; st++)
      if (m->calls[i][st])
        evbuffer_add_printf(out,
                            "ferry_cloud_calls_total{method=\"%s\",status=\"%d\"} %" PRIu64 "\n",
                            method_names[i], st, m->calls[i][st]);
  hist(out, "ferry_cloud_call_duration_seconds",
       "Cloud calls, submit to completion (retries included).", &m->call_latency);
}

static void http_and_store(svc *s, struct evbuffer *out) {
  const svc_metrics *m = &s->metrics;
  ferry_store_stats ss;
  ferry_store_stats_get(s->store, &ss);
  head(out, "ferry_http_responses_total", "counter", "HTTP answers by status class.");
  for (int i = 1; i <= 5; i++)
    evbuffer_add_printf(out, "ferry_http_responses_total{code=\"%dxx\"} %" PRIu64 "\n", i,
                        m->http[i]);
  counter(out, "ferry_ingest_requests_total", "Batches received (HTTP and feeds).",
          m->ingest_requests);
  counter(out, "ferry_ingest_rejected_total", "Batches refused whole (invalid changes or errors).",
          m->ingest_rejected);
  hist(out, "ferry_ingest_duration_seconds", "POST changes: request read to durable reply.",
       &m->ingest_latency);
  counter(out, "ferry_store_commit_groups_total", "Group commits of the store.", ss.groups);
  counter(out, "ferry_store_wal_syncs_total", "Synced log writes (each shared by a group).",
          ss.syncs);
}

void svc_metrics_render(svc *s, struct evbuffer *out) {
  const svc_metrics *m = &s->metrics;
  counter(out, "ferry_changes_ingested_total", "Changes appended to logs by this process.",
          m->changes);
  counter(out, "ferry_duplicates_total", "Changes dropped as duplicates.", m->duplicates);
  counter(out, "ferry_runs_total", "Runs ended.", m->runs);
  counter(out, "ferry_run_failures_total", "Runs that ended in error.", m->run_failures);
  gauge(out, "ferry_runs_in_progress", "Runs going on now.", m->runs_in_progress);
  gauge(out, "ferry_customer_concurrent_runs_max",
        "The most runs one customer ever had at once, over all customers (must be <= 1).",
        m->concurrent_max);
  gauge(out, "ferry_customers", "Customers known to the service.", s->custs.count);
  counter(out, "ferry_feed_polls_total", "Feed polls answered.", m->feed_polls);
  counter(out, "ferry_feed_batches_total", "Non-empty feed answers appended.", m->feed_batches);
  counter(out, "ferry_feed_errors_total", "Feed polls that failed.", m->feed_errors);
  calls(s, out);
  http_and_store(s, out);
  customers(s, out);
}
