/*
 * The field rules of SPEC §1 that both input formats share, and the record of
 * what is wrong with one change. Each check adds to an ingest_problems; the
 * decoders turn a change with problems into one ferry_change_error.
 */
#ifndef FERRY_INGEST_CHECK_H
#define FERRY_INGEST_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#include "ferry/change.h"

/* Everything wrong with one change: the first problem's field and reason,
 * with later ones appended to the reason while they fit. */
typedef struct ingest_problems {
  unsigned n;      /* problems found */
  unsigned untold; /* problems that did not fit into reason */
  char field[sizeof(((ferry_change_error *)0)->field)];
  char reason[sizeof(((ferry_change_error *)0)->reason)];
} ingest_problems;

void ingest_problems_init(ingest_problems *p);

/* Records a problem with field (may be "" for the whole change). */
void ingest_problem(ingest_problems *p, const char *field, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Finishes the reason ("... and N more") once the change is checked. */
void ingest_problems_finish(ingest_problems *p);

/* Copies the name into out as "prefix" + name, cut at a UTF-8 boundary so
 * that it fits; for field names built from input. */
void ingest_field_name(char *out, size_t size, const char *prefix, const char *name, size_t n);

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
size_t ingest_utf8_seq(const unsigned char *s, size_t n);

/* Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF). */
bool ingest_utf8_valid(const char *s, size_t n);

/* Code points in valid UTF-8. */
size_t ingest_utf8_chars(const char *s, size_t n);

/* RFC 3339 date-time, e.g. 2026-11-24T10:00:00Z or 2026-11-24T10:00:00.25+02:00. */
bool ingest_rfc3339_valid(const char *s, size_t n);

/* Checks of one field each; they record what is wrong under the field's name. */
void ingest_check_table(ingest_problems *p, const char *s, size_t n);
void ingest_check_key(ingest_problems *p, const char *field, const char *s, size_t n);
void ingest_check_id(ingest_problems *p, const char *s, size_t n);
void ingest_check_at(ingest_problems *p, const char *s, size_t n);
/* want NULL: no customer to compare with, any value is accepted. */
void ingest_check_customer(ingest_problems *p, const char *field, const char *s, size_t n,
                           const char *want);
/* Column names: 1..FERRY_COLUMN_MAX characters. index names a column that has
 * no usable name. Returns false if the name is bad. */
bool ingest_check_column_name(ingest_problems *p, const char *s, size_t n, size_t index);

/* Parses an NDJSON op name: PBENC_OP_UPSERT, PBENC_OP_DELETE or 0 if unknown. */
int ingest_op_from_name(const char *s, size_t n);

#endif /* FERRY_INGEST_CHECK_H */
