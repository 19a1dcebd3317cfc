/*
 * Fuzz target for the protobuf decoder: any bytes as a ferry.v1.ChangeBatch.
 * Every change it accepts must be protobuf-c's own encoding of a valid
 * ferry.v1.Change, and a rejected batch must carry its errors.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/change.h"
#include "ferry/v1/change.pb-c.h"

static void check_packed(const ferry_change_ref *r) {
  Ferry__V1__Change *c = ferry__v1__change__unpack(NULL, r->pb_len, r->pb);
  if (!c) abort();
  uint8_t *again = malloc(r->pb_len + 1);
  if (!again || ferry__v1__change__pack(c, again) != r->pb_len ||
      memcmp(again, r->pb, r->pb_len) != 0 || strlen(c->id) != r->id_len ||
      memcmp(c->id, r->id, r->id_len) != 0 || c->table[0] == '\0' || c->key[0] == '\0' ||
      c->version < 1 || c->customer[0] != '\0')
    abort();
  free(again);
  ferry__v1__change__free_unpacked(c, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *buf = (const char *)data;
  ferry_decode_opts opts = {"acme", true, 0};
  ferry_batch *b = NULL;
  ferry_error err;
  if (ferry_batch_decode(FERRY_FORMAT_PROTOBUF, buf, size, &opts, &b, &err) == FERRY_OK)
    for (size_t i = 0; i < ferry_batch_count(b); i++)
      check_packed(&ferry_batch_changes(b)[i]);
  ferry_batch_free(b);

  opts.skip_invalid = false;
  ferry_status st = ferry_batch_decode(FERRY_FORMAT_PROTOBUF, buf, size, &opts, &b, &err);
  if (st == FERRY_EINVAL && (!b || ferry_batch_count(b) != 0 || !ferry_batch_error_count(b)))
    abort();
  ferry_batch_free(b);
  return 0;
}
