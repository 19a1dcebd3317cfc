/*
 * The stored event, ferry.v1.Event, built without re-encoding the change: the
 * append path writes a short header (field 1 seq, field 2 ingested_at_us,
 * field 3's tag and length) in front of the caller's already-packed Change.
 * That is exactly what a protobuf encoder would emit, so `protoc --decode`
 * and protobuf-c read it back.
 *
 * It also reads just enough protobuf wire format to find a packed Change's
 * id, which append uses to check a change against its id and recovery uses
 * to find the dedup entry of an uncommitted event.
 */
#ifndef FERRY_LOG_EVENT_H
#define FERRY_LOG_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Three tags and three varints of at most 10 bytes each. */
#define EVENT_HDR_MAX 33

/* Writes the header of an Event whose field 3 is change_len bytes; returns its length. */
size_t event_header(uint8_t out[EVENT_HDR_MAX], uint64_t seq, int64_t ingested_at_us,
                    size_t change_len);

/*
 * Finds the id (field 5) of a packed ferry.v1.Change. Returns true with the
 * id pointing into pb (length 0 when the field is absent) if pb is
 * well-formed at the top level; false if it is not protobuf.
 */
bool event_change_id(const uint8_t *pb, size_t pb_len, const uint8_t **id, size_t *len);

/* Finds the packed Change (field 3) inside a packed Event; false if malformed or absent. */
bool event_change(const uint8_t *ev, size_t ev_len, const uint8_t **change, size_t *len);

#endif /* FERRY_LOG_EVENT_H */
