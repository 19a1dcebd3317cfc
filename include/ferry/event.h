/*
 * Stored events and rows as JSON: what `ferry log` prints and what the
 * projector evaluates mappings against. Rows become JSON objects of column
 * to null / boolean / integer / real / string, in the order the row gave them.
 */
#ifndef FERRY_EVENT_H
#define FERRY_EVENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/ferry.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Decodes a packed ferry.v1.Event into the object `ferry log` prints: the
 * change's own fields (table, key, op, version, id, at, row) plus seq and
 * ingested_at (RFC 3339, UTC, microseconds). *out is a new reference.
 */
ferry_status ferry_event_to_json(const uint8_t *pb, size_t len, json_t **out, ferry_error *err);

/* Formats microseconds since the epoch as RFC 3339 UTC ("2026-11-24T10:00:00.123456Z"). */
void ferry_time_format(int64_t us, char buf[32]);

/* Wall-clock microseconds since the epoch. */
int64_t ferry_time_now_us(void);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_EVENT_H */
