/*
 * Internal: protobuf values and rows to jansson (see ferry/event.h).
 */
#ifndef FERRY_COMMON_PBJSON_H
#define FERRY_COMMON_PBJSON_H

#include <jansson.h>

#include "ferry/v1/change.pb-c.h"

/* New references; NULL on OOM. */
json_t *ferry_pb_value_to_json(const Ferry__V1__Value *v);
json_t *ferry_pb_row_to_json(Ferry__V1__Column *const *cols, size_t n);
const char *ferry_pb_op_name(int op);

#endif
