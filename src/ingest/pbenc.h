/*
 * Writes a validated change as a packed ferry.v1.Change, straight into caller
 * memory. Building protobuf-c structs only to pack them again costs several
 * allocations a change; the message is simple enough to encode directly. The
 * bytes are exactly what protobuf-c would produce (fields in number order,
 * proto3 defaults left out, oneof members always written), which the unit
 * tests check against protobuf-c itself.
 *
 * Use: size the change with pbenc_head_size() plus pbenc_column_size() for
 * each column, get that many bytes, then pbenc_put_head() and
 * pbenc_put_column() in row order.
 */
#ifndef FERRY_INGEST_PBENC_H
#define FERRY_INGEST_PBENC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Values of ferry.v1.Op. */
enum { PBENC_OP_UPSERT = 1, PBENC_OP_DELETE = 2 };

typedef enum pbenc_kind {
  PBENC_NULL,
  PBENC_BOOL,
  PBENC_INT,
  PBENC_DOUBLE,
  PBENC_STRING
} pbenc_kind;

/* One column value; strings are borrowed. */
typedef struct pbenc_value {
  pbenc_kind kind;
  bool b;
  int64_t i;
  double d;
  const char *s;
  size_t n;
} pbenc_value;

/* The scalar fields of a change, already validated; strings are borrowed. */
typedef struct pbenc_head {
  const char *table;
  size_t table_len;
  const char *key;
  size_t key_len;
  int op; /* PBENC_OP_* */
  uint64_t version;
  const char *id; /* NULL: write the default table/key/version/op */
  size_t id_len;
  const char *at; /* may be empty */
  size_t at_len;
} pbenc_head;

/* Bytes of every field of h (no columns). */
size_t pbenc_head_size(const pbenc_head *h);

/* Writes h at p and returns the end. *id and *id_len are set to the id bytes
 * as written (inside the output), so the caller can index the change by id. */
uint8_t *pbenc_put_head(uint8_t *p, const pbenc_head *h, const uint8_t **id, size_t *id_len);

/* Bytes of one row entry (field 7) with this name and value. */
size_t pbenc_column_size(size_t name_len, const pbenc_value *v);

/* Writes one row entry at p and returns the end. */
uint8_t *pbenc_put_column(uint8_t *p, const char *name, size_t name_len, const pbenc_value *v);

/* The default change id, table/key/version/op, is this many bytes. */
size_t pbenc_default_id_len(const pbenc_head *h);

#endif /* FERRY_INGEST_PBENC_H */
