/* ferry-gen's NDJSON writer: builds one change line (SPEC §1) at a time and sends it to the
 * output, or nowhere while earlier waves are only being replayed in memory.
 *
 * The writer stamps each change with a unique id ("w3-000017": wave 3, its 17th change) and a
 * commit time that moves forward with every change, and keeps what deliveries need beyond
 * "write this line": the most recent lines (so a wave can deliver some twice, as an
 * at-least-once sync does) and a queue of lines held back to be delivered late.
 */
#ifndef GEN_NDJSON_H
#define GEN_NDJSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define GEN_LINE_MAX 2048 /* our rows are ~250 bytes; a longer line is a bug (gen_line.over) */
#define GEN_RECENT 256    /* lines remembered for duplicate deliveries */

/* One change line being built. Lives on the caller's stack. */
typedef struct gen_line {
  char s[GEN_LINE_MAX];
  size_t n;
  bool over; /* it did not fit: the writer refuses it */
  bool first_col;
  bool row; /* an upsert: the row object is open */
} gen_line;

typedef struct gen_writer {
  FILE *out;        /* NULL: count and remember, write nothing */
  unsigned wave;    /* 0: the initial snapshot */
  uint64_t seq;     /* changes stamped in this wave */
  int64_t clock;    /* commit time of the last change, Unix seconds */
  uint64_t written; /* lines delivered (duplicates and late ones included) */
  bool failed;      /* a write failed or a line overflowed */
  char *recent[GEN_RECENT];
  size_t recent_at; /* next slot of the ring */
  char **late;      /* lines held back, delivered by gen_writer_flush_late */
  size_t nlate, late_cap;
} gen_writer;

/* Sets up a writer for out (may be NULL). Nothing is allocated until lines are remembered. */
void gen_writer_init(gen_writer *w, FILE *out);

/* Starts wave k (0 for the snapshot): ids restart at 1, the clock jumps to the wave's day. */
void gen_writer_wave(gen_writer *w, unsigned k, int64_t start);

/* Frees what the writer remembers; the FILE is the caller's. */
void gen_writer_free(gen_writer *w);

/* Starts a change: table, integer key, op ("upsert" or "delete"), version. Stamps the id and
 * the commit time, and for an upsert opens "row". ts (may be NULL) gets the commit time as
 * RFC 3339 text, for a row's own modified-at column. */
void gen_line_begin(gen_writer *w, gen_line *l, const char *table, uint64_t key, const char *op,
                    uint64_t version, char ts[32]);
void gen_col_str(gen_line *l, const char *name, const char *value); /* NULL: JSON null */
void gen_col_int(gen_line *l, const char *name, int64_t value);
void gen_col_ref(gen_line *l, const char *name, uint64_t id); /* 0: JSON null */
void gen_col_bool(gen_line *l, const char *name, bool value);

/* Ends the line and delivers it now. Returns 0, or -1 when it could not be written. */
int gen_line_send(gen_writer *w, gen_line *l);

/* Ends the line and holds it back; gen_writer_flush_late delivers the held lines. */
int gen_line_hold(gen_writer *w, gen_line *l);
int gen_writer_flush_late(gen_writer *w);

/* Delivers again one of the last GEN_RECENT lines, picked by r (any 64-bit number), or the
 * line `back` deliveries before the newest with gen_writer_resend_last. Returns 0 when there
 * was one, 1 when nothing is remembered, -1 on a write error. */
int gen_writer_resend(gen_writer *w, uint64_t r);
int gen_writer_resend_last(gen_writer *w, size_t back);

/* Formats a Unix time as RFC 3339 UTC ("2026-01-05T08:00:00Z") or a date ("2026-01-05"). */
void gen_format_time(int64_t t, char out[32]);
void gen_format_date(int64_t t, char out[16]);

#endif
