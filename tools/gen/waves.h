/* ferry-gen's change waves: what a legacy property-management product's sync sends in a day.
 *
 * A wave is about N changes drawn from a fixed mix — e-mail edits, name fixes, people moving
 * house, edits that touch only a column the mapping ignores, phones added, renumbered, moved
 * between contacts and deleted, new contacts, archives and restores, deletes (a contact's
 * phones go with it), properties sold, lost or archived, tenancies started, ended, re-priced,
 * archived or deleted — plus suburb renames, each of which changes the suburb of every contact,
 * address and property in it. Deliveries misbehave as an at-least-once sync does: the wave
 * starts by sending the end of the previous delivery again, some lines are sent twice (same
 * id: ferry counts them as duplicates), and some intermediate versions of a row arrive late,
 * after a newer version (ferry keeps them for the audit and ignores them as stale).
 *
 * The featured contact (GEN_FEATURED_CONTACT) gets a scripted change every wave so the demo
 * has one story to follow: a new e-mail and phone, a phone moved to it, its suburb renamed,
 * a move, then e-mail edits delivered out of order.
 */
#ifndef GEN_WAVES_H
#define GEN_WAVES_H

#include <stdint.h>

#include "customer.h"
#include "ndjson.h"

typedef struct gen_wave_stats {
  uint32_t lines, duplicates, late;
  uint32_t contacts_edited, contacts_touched, contacts_new, contacts_archived, contacts_restored,
      contacts_deleted;
  uint32_t phones_edited, phones_new, phones_moved, phones_deleted;
  uint32_t suburbs_renamed, rename_reach; /* contacts and properties in the renamed suburbs */
  uint32_t properties_edited, properties_sold, properties_new, properties_gone;
  uint32_t tenancies_new, tenancies_ended, tenancies_repriced, tenancies_gone;
  char renamed_from[48], renamed_to[48]; /* the first rename */
} gen_wave_stats;

/* The commit time wave k starts at (Unix seconds): one day apart. */
int64_t gen_wave_start(unsigned k);

/* Changes c by wave k (1, 2, ...; waves must be applied in order, each once) of about `changes`
 * changes, writing them through w and counting them in *st. Returns 0, or -1 when out of
 * memory or a write failed. */
int gen_wave(gen_customer *c, gen_writer *w, unsigned k, uint32_t changes, gen_wave_stats *st);

/* A few lines describing *st, for stderr, each ending in a newline. */
void gen_wave_describe(const gen_wave_stats *st, unsigned k, char *out, size_t size);

#endif
