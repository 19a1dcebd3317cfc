/*
 * Direct protobuf encoding of ferry.v1.Change (see pbenc.h for why). The
 * field numbers below are those of proto/ferry/v1/change.proto.
 */
#include "ingest/pbenc.h"

#include <string.h>

/* Tags: field number << 3 | wire type (0 varint, 1 fixed64, 2 length-delimited). */
enum {
  TAG_TABLE = 1 << 3 | 2,
  TAG_KEY = 2 << 3 | 2,
  TAG_OP = 3 << 3 | 0,
  TAG_VERSION = 4 << 3 | 0,
  TAG_ID = 5 << 3 | 2,
  TAG_AT = 6 << 3 | 2,
  TAG_ROW = 7 << 3 | 2,
  TAG_COL_NAME = 1 << 3 | 2,
  TAG_COL_VALUE = 2 << 3 | 2,
  TAG_NULL = 1 << 3 | 0,
  TAG_BOOL = 2 << 3 | 0,
  TAG_INT = 3 << 3 | 0,
  TAG_DOUBLE = 4 << 3 | 1,
  TAG_STRING = 5 << 3 | 2
};

static size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  *p++ = (uint8_t)v;
  return p;
}

static uint8_t *put_bytes(uint8_t *p, unsigned tag, const void *s, size_t n) {
  *p++ = (uint8_t)tag;
  p = put_varint(p, n);
  memcpy(p, s, n);
  return p + n;
}

static size_t bytes_size(size_t n) {
  return 1 + varint_size(n) + n;
}

static uint64_t zigzag(int64_t v) {
  return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static size_t digits(uint64_t v) {
  size_t n = 1;
  while (v >= 10) {
    v /= 10;
    n++;
  }
  return n;
}

static const char *op_name(int op) {
  return op == PBENC_OP_DELETE ? "delete" : "upsert";
}

size_t pbenc_default_id_len(const pbenc_head *h) {
  return h->table_len + 1 + h->key_len + 1 + digits(h->version) + 1 + strlen(op_name(h->op));
}

size_t pbenc_head_size(const pbenc_head *h) {
  size_t id_len = h->id ? h->id_len : pbenc_default_id_len(h);
  size_t n = bytes_size(h->table_len) + bytes_size(h->key_len);
  n += 1 + varint_size((uint64_t)h->op);
  n += 1 + varint_size(h->version);
  n += bytes_size(id_len);
  if (h->at_len) n += bytes_size(h->at_len);
  return n;
}

static uint8_t *put_default_id(uint8_t *p, const pbenc_head *h) {
  char num[24];
  size_t nd = digits(h->version);
  uint64_t v = h->version;
  for (size_t i = nd; i-- > 0; v /= 10)
    num[i] = (char)('0' + v % 10);
  const char *op = op_name(h->op);
  memcpy(p, h->table, h->table_len);
  p += h->table_len;
  *p++ = '/';
  memcpy(p, h->key, h->key_len);
  p += h->key_len;
  *p++ = '/';
  memcpy(p, num, nd);
  p += nd;
  *p++ = '/';
  memcpy(p, op, strlen(op));
  return p + strlen(op);
}

uint8_t *pbenc_put_head(uint8_t *p, const pbenc_head *h, const uint8_t **id, size_t *id_len) {
  p = put_bytes(p, TAG_TABLE, h->table, h->table_len);
  p = put_bytes(p, TAG_KEY, h->key, h->key_len);
  *p++ = TAG_OP;
  p = put_varint(p, (uint64_t)h->op);
  *p++ = TAG_VERSION;
  p = put_varint(p, h->version);
  *id_len = h->id ? h->id_len : pbenc_default_id_len(h);
  *p++ = TAG_ID;
  p = put_varint(p, *id_len);
  *id = p;
  if (h->id) {
    memcpy(p, h->id, h->id_len);
    p += h->id_len;
  } else {
    p = put_default_id(p, h);
  }
  if (h->at_len) p = put_bytes(p, TAG_AT, h->at, h->at_len);
  return p;
}

/* Size of the Value message body. */
static size_t value_size(const pbenc_value *v) {
  switch (v->kind) {
  case PBENC_NULL: return 2;
  case PBENC_BOOL: return 2;
  case PBENC_INT: return 1 + varint_size(zigzag(v->i));
  case PBENC_DOUBLE: return 9;
  case PBENC_STRING: return bytes_size(v->n);
  }
  return 0;
}

static size_t column_body_size(size_t name_len, const pbenc_value *v) {
  return bytes_size(name_len) + bytes_size(value_size(v));
}

size_t pbenc_column_size(size_t name_len, const pbenc_value *v) {
  return bytes_size(column_body_size(name_len, v));
}

static uint8_t *put_double(uint8_t *p, double d) {
  uint64_t bits;
  memcpy(&bits, &d, sizeof bits);
  /* fixed64 is little-endian on the wire whatever the host is */
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(bits >> (8 * i));
  return p + 8;
}

uint8_t *pbenc_put_column(uint8_t *p, const char *name, size_t name_len, const pbenc_value *v) {
  *p++ = TAG_ROW;
  p = put_varint(p, column_body_size(name_len, v));
  p = put_bytes(p, TAG_COL_NAME, name, name_len);
  *p++ = TAG_COL_VALUE;
  p = put_varint(p, value_size(v));
  switch (v->kind) {
  case PBENC_NULL:
    *p++ = TAG_NULL;
    *p++ = 1;
    break;
  case PBENC_BOOL:
    *p++ = TAG_BOOL;
    *p++ = v->b ? 1 : 0;
    break;
  case PBENC_INT:
    *p++ = TAG_INT;
    p = put_varint(p, zigzag(v->i));
    break;
  case PBENC_DOUBLE:
    *p++ = TAG_DOUBLE;
    p = put_double(p, v->d);
    break;
  case PBENC_STRING: p = put_bytes(p, TAG_STRING, v->s, v->n); break;
  }
  return p;
}
