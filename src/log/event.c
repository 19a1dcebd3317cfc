/*
 * Event framing and a minimal protobuf wire reader (see event.h). The reader
 * walks top-level fields only and never allocates; nested messages are
 * skipped as opaque length-delimited bytes.
 */
#include "log/event.h"

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_FIXED32 = 5 };

static size_t put_varint(uint8_t *out, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    out[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  out[n++] = (uint8_t)v;
  return n;
}

size_t event_header(uint8_t out[EVENT_HDR_MAX], uint64_t seq, int64_t ingested_at_us,
                    size_t change_len) {
  size_t n = 0;
  out[n++] = (1 << 3) | WIRE_VARINT;
  n += put_varint(out + n, seq);
  out[n++] = (2 << 3) | WIRE_VARINT;
  n +=
      put_varint(out + n, (uint64_t)ingested_at_us); /* int64: two's complement, as protobuf does */
  out[n++] = (3 << 3) | WIRE_LEN;
  n += put_varint(out + n, (uint64_t)change_len);
  return n;
}

static bool get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  uint64_t r = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    r |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = r;
      return true;
    }
  }
  return false;
}

/*
 * Finds the last occurrence of length-delimited field `want` at the top level
 * of msg (protobuf's "last one wins"); *len stays 0 if it is absent.
 */
static bool find_len_field(const uint8_t *msg, size_t msg_len, uint32_t want, const uint8_t **val,
                           size_t *len) {
  const uint8_t *p = msg, *end = msg + msg_len;
  *val = msg;
  *len = 0;
  while (p < end) {
    uint64_t tag, v;
    if (!get_varint(&p, end, &tag) || (tag >> 3) == 0) return false;
    switch (tag & 7) {
    case WIRE_VARINT:
      if (!get_varint(&p, end, &v)) return false;
      break;
    case WIRE_FIXED64:
      if ((size_t)(end - p) < 8) return false;
      p += 8;
      break;
    case WIRE_FIXED32:
      if ((size_t)(end - p) < 4) return false;
      p += 4;
      break;
    case WIRE_LEN:
      if (!get_varint(&p, end, &v) || v > (uint64_t)(end - p)) return false;
      if ((tag >> 3) == want) {
        *val = p;
        *len = (size_t)v;
      }
      p += v;
      break;
    default: return false; /* groups are not used by ferry's messages */
    }
  }
  return true;
}

bool event_change_id(const uint8_t *pb, size_t pb_len, const uint8_t **id, size_t *len) {
  return find_len_field(pb, pb_len, 5, id, len);
}

bool event_change(const uint8_t *ev, size_t ev_len, const uint8_t **change, size_t *len) {
  return find_len_field(ev, ev_len, 3, change, len) && *len > 0;
}
