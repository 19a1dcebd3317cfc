/*
 * JSON output for people and for the wire (ferry log, plans, explain,
 * history): jansson values serialised
 * compactly, with numbers in the shortest form that reads back exactly
 * (jansson's own dump prints 0.1 as 0.10000000000000001), optionally with
 * object keys sorted bytewise (the canonical form that payload hashes use).
 */
#ifndef FERRY_JSON_H
#define FERRY_JSON_H

#include <jansson.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FERRY_JSON_SORTED 1u /* sort object keys bytewise, for stable output. Stored state
                                uses the mapping's ferry_value_canonical, the one canonical
                                form that payload hashes are taken of. */
#define FERRY_JSON_INDENT 2u /* one member a line, indented by two spaces (for people) */

/* Serialises v; returns a malloc'd NUL-terminated string or NULL on OOM. */
char *ferry_json_dump(const json_t *v, unsigned flags);

/* Renders a double in the shortest form that reads back to the same value,
 * integral values without a fraction ("4" for 4.0). buf needs 32 bytes.
 * Non-finite values render as "null" (JSON has no NaN). Returns the length. */
size_t ferry_json_format_double(char *buf, double d);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_JSON_H */
