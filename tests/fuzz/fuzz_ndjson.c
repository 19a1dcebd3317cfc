/*
 * Fuzz target for the NDJSON decoder. Besides "does not crash", it checks
 * what the decoder promises: the fast path and the jansson path, and one
 * thread and two, give the same batch byte for byte, and every packed change
 * is protobuf-c's own encoding of a ferry.v1.Change. A difference aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/change.h"
#include "ferry/v1/change.pb-c.h"
#include "ingest/batch.h"

static void check_packed(const ferry_change_ref *r) {
  Ferry__V1__Change *c = ferry__v1__change__unpack(NULL, r->pb_len, r->pb);
  if (!c) abort();
  uint8_t *again = malloc(r->pb_len + 1);
  if (!again || ferry__v1__change__pack(c, again) != r->pb_len ||
      memcmp(again, r->pb, r->pb_len) != 0 || strlen(c->id) != r->id_len ||
      memcmp(c->id, r->id, r->id_len) != 0 || c->table[0] == '\0' || c->key[0] == '\0' ||
      c->version < 1)
    abort();
  free(again);
  ferry__v1__change__free_unpacked(c, NULL);
}

static void same(const ferry_batch *a, ferry_status sa, const ferry_batch *b, ferry_status sb) {
  if (sa != sb || ferry_batch_count(a) != ferry_batch_count(b) ||
      ferry_batch_error_count(a) != ferry_batch_error_count(b) ||
      ferry_batch_invalid_total(a) != ferry_batch_invalid_total(b))
    abort();
  for (size_t i = 0; i < ferry_batch_count(a); i++) {
    const ferry_change_ref *x = &ferry_batch_changes(a)[i], *y = &ferry_batch_changes(b)[i];
    if (x->pb_len != y->pb_len || memcmp(x->pb, y->pb, x->pb_len) != 0) abort();
  }
  for (size_t i = 0; i < ferry_batch_error_count(a); i++) {
    const ferry_change_error *x = &ferry_batch_errors(a)[i], *y = &ferry_batch_errors(b)[i];
    if (x->line != y->line || strcmp(x->field, y->field) != 0 ||
        strcmp(x->reason, y->reason) != 0 || x->text != y->text)
      abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const ingest_tuning tunes[] = {{1, false}, {1, true}, {2, false}};
  const char *buf = (const char *)data;
  ferry_decode_opts opts = {"acme", true, 0};
  ferry_batch *b[3] = {NULL, NULL, NULL};
  ferry_status st[3];
  ferry_error err;
  for (int i = 0; i < 3; i++)
    st[i] = ingest_batch_decode(FERRY_FORMAT_NDJSON, buf, size, &opts, &tunes[i], &b[i], &err);
  if (st[0] == FERRY_OK) {
    for (size_t i = 0; i < ferry_batch_count(b[0]); i++)
      check_packed(&ferry_batch_changes(b[0])[i]);
    same(b[0], st[0], b[1], st[1]);
    same(b[0], st[0], b[2], st[2]);
  }
  for (int i = 0; i < 3; i++)
    ferry_batch_free(b[i]);

  /* without skip_invalid: all or nothing */
  opts.skip_invalid = false;
  ferry_batch *all = NULL;
  ferry_status s = ferry_batch_decode(FERRY_FORMAT_NDJSON, buf, size, &opts, &all, &err);
  if (s == FERRY_EINVAL && (!all || ferry_batch_count(all) != 0 || !ferry_batch_error_count(all)))
    abort();
  ferry_batch_free(all);
  return 0;
}
