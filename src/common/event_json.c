/*
 * Decoding stored events into JSON for people and for the projector.
 */
#include "ferry/event.h"

#include <stdio.h>
#include <sys/time.h>
#include <time.h>

#include "common/pbjson.h"
#include "ferry/v1/event.pb-c.h"

int64_t ferry_time_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void ferry_time_format(int64_t us, char buf[32]) {
  time_t secs = (time_t)(us / 1000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  size_t n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, 32 - n, ".%06dZ", (int)(us % 1000000));
}

json_t *ferry_pb_value_to_json(const Ferry__V1__Value *v) {
  if (!v) return json_null();
  switch (v->kind_case) {
  case FERRY__V1__VALUE__KIND_BOOL_VALUE: return json_boolean(v->bool_value);
  case FERRY__V1__VALUE__KIND_INT_VALUE: return json_integer(v->int_value);
  case FERRY__V1__VALUE__KIND_DOUBLE_VALUE: return json_real(v->double_value);
  case FERRY__V1__VALUE__KIND_STRING_VALUE: return json_string(v->string_value);
  case FERRY__V1__VALUE__KIND_NULL_VALUE:
  case FERRY__V1__VALUE__KIND__NOT_SET:
  default: return json_null();
  }
}

json_t *ferry_pb_row_to_json(Ferry__V1__Column *const *cols, size_t n) {
  json_t *row = json_object();
  if (!row) return NULL;
  for (size_t i = 0; i < n; i++) {
    json_t *v = ferry_pb_value_to_json(cols[i]->value);
    if (!v || json_object_set_new(row, cols[i]->name, v) != 0) {
      json_decref(row);
      return NULL;
    }
  }
  return row;
}

const char *ferry_pb_op_name(int op) {
  return op == FERRY__V1__OP__OP_DELETE ? "delete" : op == FERRY__V1__OP__OP_UPSERT ? "upsert" : "unspecified";
}

ferry_status ferry_event_to_json(const uint8_t *pb, size_t len, json_t **out, ferry_error *err) {
  ferry_status st = FERRY_OK;
  char when[32];
  json_t *o = NULL;
  Ferry__V1__Event *ev = ferry__v1__event__unpack(NULL, len, pb);
  if (!ev || !ev->change) {
    st = ferry_error_set(err, FERRY_ECORRUPT, "stored event does not decode as ferry.v1.Event");
    goto done;
  }
  const Ferry__V1__Change *c = ev->change;
  ferry_time_format(ev->ingested_at_us, when);
  o = json_pack("{s:I, s:s, s:s, s:s, s:I, s:s}", "seq", (json_int_t)ev->seq, "table", c->table,
                "key", c->key, "op", ferry_pb_op_name(c->op), "version", (json_int_t)c->version,
                "id", c->id);
  if (!o) goto oom;
  if (c->at && c->at[0] && json_object_set_new(o, "at", json_string(c->at))) goto oom;
  if (c->op == FERRY__V1__OP__OP_UPSERT) {
    json_t *row = ferry_pb_row_to_json(c->row, c->n_row);
    if (!row || json_object_set_new(o, "row", row)) goto oom;
  }
  if (json_object_set_new(o, "ingested_at", json_string(when))) goto oom;
  *out = o;
  o = NULL;
  goto done;
oom:
  st = ferry_error_set(err, FERRY_ENOMEM, "out of memory decoding an event");
done:
  json_decref(o);
  if (ev) ferry__v1__event__free_unpacked(ev, NULL);
  return st;
}
