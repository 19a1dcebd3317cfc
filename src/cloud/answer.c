/*
 * What one finished request means for its call (SPEC §3): done, retry, or go
 * on with the next step of a create.
 *
 * DESIGN: one cloud record per entity
 *   A create may reach the cloud without us learning so: the connection drops
 *   after the cloud committed, the answer times out, a proxy answers 5xx for a
 *   backend that did the work. Every create carries an Idempotency-Key that is
 *   the same for each attempt, which is enough for a cloud that honours it.
 *   For one that does not, a create that *may* have reached the cloud (the
 *   caller says so with `resume`, after a crash or an earlier ambiguous run;
 *   or one of our own attempts ended ambiguously) looks the record up by
 *   external key before posting again: a match is adopted (outcome ADOPTED),
 *   no match means no earlier attempt committed, so posting is safe. Answers
 *   that prove the cloud did nothing (connection refused, 408, 429) do not make
 *   a create ambiguous; 5xx, timeouts and dropped connections do, and once
 *   ambiguous every later attempt looks up first. Several matches can only
 *   come from a cloud that lost our key and our lookup; we adopt the lowest id
 *   so every run picks the same one, and say so in the error text. An
 *   adopted record holds what the earlier attempt posted; when the rows have
 *   changed since, it is patched to the payload we meant to post (STEP_FIX),
 *   so the caller may record that payload as the cloud's.
 *   libcurl itself re-sends a request whose reused connection died before any
 *   answer byte; for a POST that is exactly the ambiguous case, so request.c
 *   refuses the re-send (CURLOPT_PREREQFUNCTION) and it is judged here as an
 *   ambiguous failure like any dropped connection.
 *
 *   A DELETE of an entity whose create never got an answer has no id: it
 *   looks the record up by external key and deletes whatever it finds.
 *
 *   Retryable: transport errors, 408, 429, 5xx (backoff in client.c). 404 on
 *   PATCH/DELETE: the record is gone. 401: the token is wrong, which no entity
 *   can fix, so the call ends UNKNOWN (left dirty) and the sync stops. Any
 *   other status is the cloud refusing this entity: FAILED with the status
 *   and an excerpt of the answer.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloud/client_int.h"
#include "ferry/json.h"

/* Up to 200 bytes of the answer, control characters as spaces, for messages. */
static void excerpt(const cloud_op *op, char *out, size_t cap) {
  size_t n = 0;
  for (size_t i = 0; i < op->resp.len && n + 1 < cap && i < 200; i++) {
    unsigned char ch = (unsigned char)op->resp.data[i];
    out[n++] = (char)(ch < 0x20 || ch == 0x7f ? ' ' : ch);
  }
  out[n] = '\0';
}

static verdict end_with(cloud_op *op, ferry_outcome o) {
  op->outcome = o;
  return V_END;
}

static verdict refused(cloud_op *op, long status) {
  char ex[201];
  excerpt(op, ex, sizeof ex);
  snprintf(op->error, sizeof op->error, "HTTP %ld from %s: %s", status, request_method(op),
           ex[0] ? ex : "(empty answer)");
  return end_with(op, FERRY_OUTCOME_FAILED);
}

/* A retryable failure; ambiguous when the request may have been acted on. */
static verdict retry(cloud_op *op, bool ambiguous) {
  if (ambiguous && op->kind == FERRY_CLOUD_CREATE && op->step == STEP_MAIN)
    op->maybe_committed = true;
  if (op->kind == FERRY_CLOUD_CREATE && op->step != STEP_FIX)
    op->step = op->maybe_committed ? STEP_FIND : STEP_MAIN;
  return V_RETRY;
}

static verdict judge_transport(cloud_op *op, CURLcode rc) {
  snprintf(op->error, sizeof op->error, "%s: %s", request_method(op),
           op->errbuf[0] ? op->errbuf : curl_easy_strerror(rc));
  if (op->resend_refused) {
    snprintf(op->error, sizeof op->error, "POST: the connection closed without an answer");
    return retry(op, true);
  }
  switch (rc) {
  case CURLE_COULDNT_CONNECT:
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY: return retry(op, false); /* nothing was sent */
  case CURLE_OPERATION_TIMEDOUT:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
  case CURLE_WEIRD_SERVER_REPLY: return retry(op, true);
  case CURLE_WRITE_ERROR:
    if (op->resp.over)
      snprintf(op->error, sizeof op->error, "%s: the answer is over %u bytes", request_method(op),
               FERRY_CLOUD_MAX_RESPONSE);
    return end_with(op, op->resp.over ? FERRY_OUTCOME_FAILED : FERRY_OUTCOME_UNKNOWN);
  default: return end_with(op, FERRY_OUTCOME_FAILED);
  }
}

/* The id of record (a JSON object) as JSON text, or NULL. */
static char *record_id(const ferry_cloud *c, const json_t *record) {
  const json_t *id = json_object_get(record, c->id_field);
  if (!json_is_string(id) && !json_is_integer(id)) return NULL;
  if (json_is_string(id) && json_string_length(id) == 0) return NULL;
  return ferry_json_dump(id, 0);
}

/* Orders ids: integers numerically before strings, strings bytewise. */
static int id_cmp(const json_t *a, const json_t *b) {
  if (json_is_integer(a) && json_is_integer(b)) {
    json_int_t x = json_integer_value(a), y = json_integer_value(b);
    return (x > y) - (x < y);
  }
  if (json_is_integer(a) != json_is_integer(b)) return json_is_integer(a) ? -1 : 1;
  return strcmp(json_string_value(a), json_string_value(b));
}

/* Keeps the records of the array whose external key is ours (a cloud may
 * ignore the query and list everything). NULL on a malformed answer. */
static json_t *matches(const ferry_cloud *c, const cloud_op *op, const json_t *all) {
  json_t *out = json_is_array(all) ? json_array() : NULL;
  size_t i;
  json_t *r;
  if (!out) return NULL;
  json_array_foreach(all, i, r) {
    const json_t *k = json_object_get(r, c->ext_field);
    if (!json_is_string(k) || strcmp(json_string_value(k), op->external_key) != 0) continue;
    const json_t *id = json_object_get(r, c->id_field);
    if (!json_is_string(id) && !json_is_integer(id)) continue;
    if (json_array_append(out, r) != 0) {
      json_decref(out);
      return NULL;
    }
  }
  return out;
}

/* The fields of the payload we meant to post that rec lacks or holds
 * differently, as JSON text ("" when none), or NULL when out of memory. */
static char *missing_fields(const cloud_op *op, const json_t *rec) {
  json_t *want = json_loads(op->body, 0, NULL), *fix = json_object();
  const char *k;
  json_t *v;
  char *text = NULL;
  if (!want || !fix) goto done;
  json_object_foreach(want, k, v) {
    if (!json_equal(json_object_get(rec, k), v) && json_object_set(fix, k, v) != 0) goto done;
  }
  text = json_object_size(fix) ? ferry_json_dump(fix, 0) : strdup("");
done:
  json_decref(want);
  json_decref(fix);
  return text;
}

/* Names the records beyond the adopted one in op->error. */
static void note_extras(ferry_cloud *c, cloud_op *op, const json_t *found, size_t best) {
  size_t i;
  json_t *r;
  op->note = true;
  int n = snprintf(op->error, sizeof op->error, "%zu cloud records have %s %s; adopted %s, not",
                   json_array_size(found), c->ext_field, op->external_key, op->id);
  json_array_foreach(found, i, r) {
    char *other = i == best ? NULL : record_id(c, r);
    if (other && n > 0 && (size_t)n < sizeof op->error)
      n += snprintf(op->error + n, sizeof op->error - (size_t)n, " %s", other);
    free(other);
  }
}

/* A lookup inside a create found these records: adopt the lowest id. The
 * record holds what an earlier attempt posted, which may be an older payload
 * than ours (the rows changed since), so it is patched to ours first: the
 * caller records our payload as the cloud's. */
static verdict adopt(ferry_cloud *c, cloud_op *op, json_t *found) {
  size_t i, best = 0;
  json_t *r;
  ferry_error err;
  json_array_foreach(found, i, r) {
    if (id_cmp(json_object_get(r, c->id_field),
               json_object_get(json_array_get(found, best), c->id_field)) < 0)
      best = i;
  }
  free(op->id);
  op->id = record_id(c, json_array_get(found, best));
  free(op->fix_body);
  op->fix_body = op->id ? missing_fields(op, json_array_get(found, best)) : NULL;
  if (!op->id || !op->fix_body) {
    snprintf(op->error, sizeof op->error, "out of memory");
    return end_with(op, FERRY_OUTCOME_UNKNOWN);
  }
  if (json_array_size(found) > 1) note_extras(c, op, found, best);
  if (!op->fix_body[0]) return end_with(op, FERRY_OUTCOME_ADOPTED);
  if (request_fix_url(c, op, &err)) {
    snprintf(op->error, sizeof op->error, "%.500s", err.msg);
    return end_with(op, FERRY_OUTCOME_UNKNOWN);
  }
  op->step = STEP_FIX;
  return V_NEXT;
}

/* A DELETE without an id deletes every record its lookup found, one by one. */
static verdict delete_next(ferry_cloud *c, cloud_op *op, ferry_outcome if_last) {
  ferry_error err;
  if (!op->to_delete || op->delete_next >= json_array_size(op->to_delete))
    return end_with(op, if_last);
  if (request_delete_next(c, op, &err)) {
    snprintf(op->error, sizeof op->error, "%.500s", err.msg);
    return end_with(op, FERRY_OUTCOME_UNKNOWN);
  }
  op->step = STEP_MAIN;
  return V_NEXT;
}

static verdict found_for_delete(ferry_cloud *c, cloud_op *op, json_t *found) {
  if (json_array_size(found) == 0) return end_with(op, FERRY_OUTCOME_GONE);
  if (json_array_size(found) > 1) {
    op->note = true;
    snprintf(op->error, sizeof op->error, "%zu cloud records had %s %s; deleted them all",
             json_array_size(found), c->ext_field, op->external_key);
  }
  op->to_delete = json_incref(found);
  return delete_next(c, op, FERRY_OUTCOME_OK);
}

static verdict judge_find(ferry_cloud *c, cloud_op *op, long status) {
  json_error_t jerr;
  json_t *all = json_loadb(op->resp.data ? op->resp.data : "", op->resp.len, 0, &jerr);
  json_t *found = matches(c, op, all);
  verdict v;
  json_decref(all);
  if (!found) {
    snprintf(op->error, sizeof op->error, "GET answered %ld without a JSON array", status);
    v = retry(op, false);
  } else if (op->kind == FERRY_CLOUD_FIND) {
    op->found = json_incref(found);
    v = end_with(op, FERRY_OUTCOME_OK);
  } else if (op->kind == FERRY_CLOUD_DELETE) {
    v = found_for_delete(c, op, found);
  } else if (json_array_size(found) > 0) {
    v = adopt(c, op, found);
  } else {
    op->step = STEP_MAIN; /* nothing there: no earlier attempt committed */
    v = V_NEXT;
  }
  json_decref(found);
  return v;
}

static verdict judge_created(ferry_cloud *c, cloud_op *op, long status) {
  json_error_t jerr;
  json_t *rec = json_loadb(op->resp.data ? op->resp.data : "", op->resp.len, 0, &jerr);
  op->id = json_is_object(rec) ? record_id(c, rec) : NULL;
  json_decref(rec);
  if (op->id) return end_with(op, FERRY_OUTCOME_OK);
  /* it said yes but not to what: the record may exist, so look it up */
  snprintf(op->error, sizeof op->error, "POST answered %ld without a string or integer %s", status,
           c->id_field);
  return retry(op, true);
}

/* The PATCH that brought an adopted record up to our payload answered 2xx,
 * or 404: the record vanished meanwhile, so look again. */
static verdict judge_fix(cloud_op *op, long status) {
  if (status != 404) return end_with(op, FERRY_OUTCOME_ADOPTED);
  snprintf(op->error, sizeof op->error, "the adopted record %s vanished (HTTP 404)", op->id);
  op->step = STEP_FIND;
  return V_RETRY;
}

verdict answer_judge(ferry_cloud *c, cloud_op *op, CURLcode rc, long status) {
  bool main = op->step == STEP_MAIN && op->kind != FERRY_CLOUD_FIND;
  op->http_status = rc == CURLE_OK ? (int)status : 0;
  if (rc != CURLE_OK) return judge_transport(op, rc);
  if (op->step == STEP_FIX && ((status >= 200 && status < 300) || status == 404))
    return judge_fix(op, status);
  if (status >= 200 && status < 300) {
    if (!main) return judge_find(c, op, status);
    if (op->kind == FERRY_CLOUD_CREATE) return judge_created(c, op, status);
    if (op->kind == FERRY_CLOUD_DELETE) return delete_next(c, op, FERRY_OUTCOME_OK);
    return end_with(op, FERRY_OUTCOME_OK);
  }
  if (status == 404 && main && op->kind == FERRY_CLOUD_DELETE)
    return delete_next(c, op, op->to_delete ? FERRY_OUTCOME_OK : FERRY_OUTCOME_GONE);
  if (status == 404 && main && op->kind == FERRY_CLOUD_PATCH)
    return end_with(op, FERRY_OUTCOME_GONE);
  if (status == 401) {
    op->unauthorized = true;
    snprintf(op->error, sizeof op->error, "the cloud refused the token (HTTP 401 from %s)",
             request_method(op));
    return end_with(op, FERRY_OUTCOME_UNKNOWN);
  }
  if (status == 408 || status == 429 || (status >= 500 && status < 600)) {
    snprintf(op->error, sizeof op->error, "HTTP %ld from %s", status, request_method(op));
    return retry(op, status >= 500);
  }
  return refused(op, status);
}
