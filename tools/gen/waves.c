/* ferry-gen's change waves: see waves.h for what a wave holds. Each kind of change is one small
 * function that picks its row, changes it in the customer and writes the row's new image; a
 * table of weights decides the mix. A function returns 0 when it made its change, 1 when there
 * was no row it applies to (another kind is drawn instead), -1 on failure. */
#include "waves.h"

#include <stdio.h>
#include <string.h>

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define DAY 86400
#define WAVE_EPOCH 1769904000 /* 2026-02-01T00:00:00Z: wave k starts k days later */
#define P_LATE 0.15           /* of e-mail and rent edits: an intermediate version arrives late */
#define P_DUPLICATE 0.02      /* after any line: one of the recent lines is sent again */

typedef struct wave {
  gen_customer *c;
  gen_writer *w;
  gen_wave_stats *st;
} wave;

int64_t gen_wave_start(unsigned k) {
  return WAVE_EPOCH + (int64_t)k * DAY;
}

/* ---- writing rows -----------------------------------------------------------------------------
 */

typedef void (*line_fn)(gen_customer *, gen_writer *, uint32_t, gen_line *);

/* Writes row id's current image as its next version (hold: deliver it late). */
static int put(wave *v, line_fn fn, uint32_t *version, uint32_t id, bool hold) {
  gen_line l;
  ++*version;
  fn(v->c, v->w, id, &l);
  if (hold) {
    v->st->late++;
    return gen_line_hold(v->w, &l);
  }
  return gen_line_send(v->w, &l);
}

static int put_contact(wave *v, uint32_t id, bool hold) {
  return put(v, gen_contact_line, &v->c->contacts.v[id - 1].version, id, hold);
}
static int put_phone(wave *v, uint32_t id) {
  return put(v, gen_phone_line, &v->c->phones.v[id - 1].version, id, false);
}
static int put_property(wave *v, uint32_t id) {
  return put(v, gen_property_line, &v->c->properties.v[id - 1].version, id, false);
}
static int put_tenancy(wave *v, uint32_t id, bool hold) {
  return put(v, gen_tenancy_line, &v->c->tenancies.v[id - 1].version, id, hold);
}

/* New rows are written at their version 1. */
static int put_new(wave *v, line_fn fn, uint32_t id) {
  gen_line l;
  if (!id) return -1;
  fn(v->c, v->w, id, &l);
  return gen_line_send(v->w, &l);
}

/* ---- contacts ---------------------------------------------------------------------------------
 */

/* A new e-mail address; sometimes an intermediate one is sent too, and delivered late. */
static int set_email(wave *v, uint32_t id, bool late) {
  gen_contact *k = &v->c->contacts.v[id - 1];
  if (late) {
    gen_random_email(v->c, k);
    if (put_contact(v, id, true)) return -1;
  }
  gen_random_email(v->c, k);
  return put_contact(v, id, false);
}

static int contact_email(wave *v) {
  uint32_t id = gen_pick_contact(v->c, false, false);
  if (!id) return 1;
  v->st->contacts_edited++;
  return set_email(v, id, gen_chance(v->c, P_LATE));
}

static int contact_name(wave *v) {
  uint32_t id = gen_pick_contact(v->c, false, false);
  if (!id) return 1;
  gen_contact *k = &v->c->contacts.v[id - 1];
  char *first = k->first;
  /* a typo fixed, or a stray space from the legacy form */
  if (gen_chance(v->c, 0.5) && strlen(first) + 2 < sizeof k->first) {
    memmove(first + 1, first, strlen(first) + 1);
    first[0] = ' ';
  } else {
    for (char *p = first; *p; p++)
      if (*p >= 'a' && *p <= 'z') {
        *p = (char)(*p & ~0x20);
        break;
      }
  }
  v->st->contacts_edited++;
  return put_contact(v, id, false);
}

static int move_house(wave *v, uint32_t id) {
  gen_contact *k = &v->c->contacts.v[id - 1];
  gen_random_street(v->c, k->street, sizeof k->street, NULL);
  if (v->c->suburbs.n) k->suburb = 1 + gen_below(v->c, v->c->suburbs.n);
  return put_contact(v, id, false);
}

static int contact_move(wave *v) {
  uint32_t id = gen_pick_contact(v->c, false, false);
  if (!id) return 1;
  v->st->contacts_edited++;
  return move_house(v, id);
}

/* Only ModifiedAt changes: a column the mapping does not use, so no cloud call. */
static int contact_touch(wave *v) {
  uint32_t id = gen_pick_contact(v->c, true, false);
  if (!id) return 1;
  v->st->contacts_touched++;
  return put_contact(v, id, false);
}

static int contact_type(wave *v) {
  uint32_t id = gen_pick_contact(v->c, false, false);
  if (!id) return 1;
  gen_contact *k = &v->c->contacts.v[id - 1];
  k->type = (uint8_t)((k->type + 1 + gen_below(v->c, 3)) % 4);
  v->st->contacts_edited++;
  return put_contact(v, id, false);
}

static int contact_new(wave *v) {
  uint32_t id = gen_contact_new(v->c);
  if (put_new(v, gen_contact_line, id)) return -1;
  v->st->contacts_new++;
  for (uint32_t n = gen_below(v->c, 3); n > 0; n--) {
    if (put_new(v, gen_phone_line, gen_phone_new(v->c, id))) return -1;
    v->st->phones_new++;
  }
  return 0;
}

static int contact_archive(wave *v) {
  uint32_t id = gen_pick_contact(v->c, false, false);
  if (!id) return 1;
  v->c->contacts.v[id - 1].archived = true;
  v->st->contacts_archived++;
  return put_contact(v, id, false);
}

static int contact_restore(wave *v) {
  for (int tries = 0; tries < 64; tries++) {
    uint32_t id = gen_pick_contact(v->c, true, false);
    gen_contact *k = id ? &v->c->contacts.v[id - 1] : NULL;
    if (k && k->archived) {
      k->archived = false;
      v->st->contacts_restored++;
      return put_contact(v, id, false);
    }
  }
  return 1;
}

/* The legacy product deletes a contact's phones with it. */
static int contact_delete(wave *v) {
  uint32_t id = gen_pick_contact(v->c, true, false);
  if (!id) return 1;
  v->c->contacts.v[id - 1].live = false;
  if (put_contact(v, id, false)) return -1;
  v->st->contacts_deleted++;
  for (uint32_t i = 1; i <= v->c->phones.n; i++) {
    gen_phone *p = &v->c->phones.v[i - 1];
    if (!p->live || p->contact != id) continue;
    p->live = false;
    v->st->phones_deleted++;
    if (put_phone(v, i)) return -1;
  }
  return 0;
}

/* ---- phones -----------------------------------------------------------------------------------
 */

static int phone_number(wave *v) {
  uint32_t id = gen_pick_phone(v->c);
  if (!id) return 1;
  gen_random_number(v->c, &v->c->phones.v[id - 1]);
  v->st->phones_edited++;
  return put_phone(v, id);
}

static int phone_kind(wave *v) {
  uint32_t id = gen_pick_phone(v->c);
  if (!id) return 1;
  gen_phone *p = &v->c->phones.v[id - 1];
  p->kind = (uint8_t)((p->kind + 1) % 3);
  v->st->phones_edited++;
  return put_phone(v, id);
}

static int phone_new(wave *v) {
  uint32_t contact = gen_pick_contact(v->c, true, false);
  if (!contact) return 1;
  v->st->phones_new++;
  return put_new(v, gen_phone_line, gen_phone_new(v->c, contact));
}

/* A phone row moves to another contact: ContactID changes, two contacts' phones change. */
static int move_phone(wave *v, uint32_t id, uint32_t to) {
  gen_phone *p = &v->c->phones.v[id - 1];
  p->contact = to;
  p->position = v->c->contacts.v[to - 1].next_position++;
  v->st->phones_moved++;
  return put_phone(v, id);
}

static int phone_move(wave *v) {
  uint32_t id = gen_pick_phone(v->c), to = gen_pick_contact(v->c, false, false);
  if (!id || !to || v->c->phones.v[id - 1].contact == to) return 1;
  return move_phone(v, id, to);
}

static int phone_delete(wave *v) {
  uint32_t id = gen_pick_phone(v->c);
  if (!id) return 1;
  v->c->phones.v[id - 1].live = false;
  v->st->phones_deleted++;
  return put_phone(v, id);
}

/* ---- suburbs ----------------------------------------------------------------------------------
 */

static int suburb_rename(wave *v, uint32_t id) {
  gen_suburb *s = &v->c->suburbs.v[id - 1];
  if (!v->st->suburbs_renamed++)
    snprintf(v->st->renamed_from, sizeof v->st->renamed_from, "%s", s->name);
  gen_random_suburb_name(v->c, s->name);
  if (v->st->suburbs_renamed == 1)
    snprintf(v->st->renamed_to, sizeof v->st->renamed_to, "%s", s->name);
  for (uint32_t i = 0; i < v->c->contacts.n; i++) {
    const gen_contact *k = &v->c->contacts.v[i];
    v->st->rename_reach += k->live && !k->archived && k->suburb == id;
  }
  for (uint32_t i = 0; i < v->c->properties.n; i++) {
    const gen_property *p = &v->c->properties.v[i];
    v->st->rename_reach += p->live && !p->archived && p->suburb == id;
  }
  return put(v, gen_suburb_line, &s->version, id, false);
}

/* ---- properties -------------------------------------------------------------------------------
 */

static int property_edit(wave *v) {
  uint32_t id = gen_pick_property(v->c);
  if (!id) return 1;
  gen_property *p = &v->c->properties.v[id - 1];
  if (gen_chance(v->c, 0.5))
    p->bedrooms = (uint8_t)(1 + (p->bedrooms % 5));
  else
    p->type = (uint8_t)((p->type + 1) % 3);
  v->st->properties_edited++;
  return put_property(v, id);
}

static int property_sold(wave *v) {
  uint32_t id = gen_pick_property(v->c), owner = gen_pick_contact_of(v->c, CT_OWNER);
  if (!id || !owner) return 1;
  v->c->properties.v[id - 1].owner = owner;
  v->st->properties_sold++;
  return put_property(v, id);
}

static int property_gone(wave *v) { /* management lost, withdrawn from rent, or archived */
  uint32_t id = gen_pick_property(v->c), shape = gen_below(v->c, 3);
  if (!id) return 1;
  gen_property *p = &v->c->properties.v[id - 1];
  if (shape < 2)
    p->status = shape ? PS_WITHDRAWN : PS_LOST;
  else
    p->archived = true;
  v->st->properties_gone++;
  return put_property(v, id);
}

static int property_new(wave *v) {
  uint32_t id = gen_property_new(v->c);
  if (!id) return -1;
  gen_property *p = &v->c->properties.v[id - 1];
  p->status = PS_MANAGED;
  p->archived = false;
  v->st->properties_new++;
  return put_new(v, gen_property_line, id);
}

/* ---- tenancies --------------------------------------------------------------------------------
 */

static uint32_t pick_tenancy(wave *v, uint8_t status) {
  for (int tries = 0; tries < 64; tries++) {
    uint32_t id = gen_pick_tenancy(v->c);
    if (id && v->c->tenancies.v[id - 1].status == status) return id;
  }
  return 0;
}

static int tenancy_new(wave *v, unsigned k) {
  uint32_t id = gen_tenancy_new(v->c);
  if (!id) return -1;
  gen_tenancy *t = &v->c->tenancies.v[id - 1];
  t->status = gen_chance(v->c, 0.8) ? TS_ACTIVE : TS_PENDING;
  t->start = gen_wave_start(k) + (int64_t)gen_below(v->c, 30) * DAY;
  t->end = 0;
  t->archived = false;
  v->st->tenancies_new++;
  return put_new(v, gen_tenancy_line, id);
}

static int tenancy_end(wave *v, unsigned k) {
  uint32_t id = pick_tenancy(v, TS_ACTIVE);
  if (!id) return 1;
  gen_tenancy *t = &v->c->tenancies.v[id - 1];
  t->status = TS_ENDED;
  t->end = gen_wave_start(k);
  v->st->tenancies_ended++;
  return put_tenancy(v, id, false);
}

static int tenancy_rent(wave *v) {
  uint32_t id = pick_tenancy(v, TS_ACTIVE);
  if (!id) return 1;
  gen_tenancy *t = &v->c->tenancies.v[id - 1];
  v->st->tenancies_repriced++;
  if (gen_chance(v->c, P_LATE)) {
    t->rent_cents += 500;
    if (put_tenancy(v, id, true)) return -1;
  }
  t->rent_cents += 1000 + 500 * gen_below(v->c, 10);
  return put_tenancy(v, id, false);
}

static int tenancy_gone(wave *v) { /* archived, or deleted */
  uint32_t id = gen_pick_tenancy(v->c);
  if (!id) return 1;
  gen_tenancy *t = &v->c->tenancies.v[id - 1];
  if (gen_chance(v->c, 0.6))
    t->archived = true;
  else
    t->live = false;
  v->st->tenancies_gone++;
  return put_tenancy(v, id, false);
}

/* ---- the mix ----------------------------------------------------------------------------------
 */

typedef struct kind {
  unsigned weight;
  int (*fn)(wave *v);
  int (*fn_k)(wave *v, unsigned k); /* kinds that need the wave's date */
} kind;

static const kind MIX[] = {
    {120, contact_email, NULL},  {30, contact_name, NULL},    {60, contact_move, NULL},
    {80, contact_touch, NULL},   {20, contact_type, NULL},    {50, contact_new, NULL},
    {20, contact_archive, NULL}, {10, contact_restore, NULL}, {10, contact_delete, NULL},
    {80, phone_number, NULL},    {20, phone_kind, NULL},      {50, phone_new, NULL},
    {60, phone_move, NULL},      {30, phone_delete, NULL},    {40, property_edit, NULL},
    {40, property_sold, NULL},   {20, property_gone, NULL},   {20, property_new, NULL},
    {60, NULL, tenancy_new},     {40, NULL, tenancy_end},     {50, tenancy_rent, NULL},
    {30, tenancy_gone, NULL},
};

static int one_change(wave *v, unsigned k) {
  unsigned total = 0;
  for (size_t i = 0; i < NELEM(MIX); i++)
    total += MIX[i].weight;
  for (int tries = 0; tries < 100; tries++) {
    unsigned r = gen_below(v->c, total);
    size_t i = 0;
    while (r >= MIX[i].weight)
      r -= MIX[i++].weight;
    int rc = MIX[i].fn ? MIX[i].fn(v) : MIX[i].fn_k(v, k);
    if (rc != 1) return rc;
  }
  return 1; /* nothing applies: an empty customer */
}

/* The featured contact's change in wave k. */
static int featured(wave *v, unsigned k) {
  uint32_t id = GEN_FEATURED_CONTACT;
  if (v->c->contacts.n < id || !v->c->contacts.v[id - 1].live) return 0;
  gen_contact *f = &v->c->contacts.v[id - 1];
  switch (k) {
  case 1: { /* a new e-mail address, typed in capitals, and a new mobile */
    char first[32], last[32];
    v->st->contacts_edited++;
    v->st->phones_new++;
    gen_ascii_lower(f->first, first, sizeof first);
    gen_ascii_lower(f->last, last, sizeof last);
    snprintf(f->email, sizeof f->email, "%s.%s@NEWMAIL.EXAMPLE ", first, last);
    for (char *p = f->email; *p && *p != '@'; p++)
      if (*p >= 'a' && *p <= 'z') *p = (char)(*p & ~0x20);
    f->email_null = false;
    if (put_contact(v, id, false)) return -1;
    return put_new(v, gen_phone_line, gen_phone_new(v->c, id));
  }
  case 2: { /* a phone filed under another contact is moved to it */
    uint32_t p = gen_pick_phone(v->c);
    return p && v->c->phones.v[p - 1].contact != id ? move_phone(v, p, id) : 0;
  }
  case 3: /* its suburb is renamed */ return f->suburb ? suburb_rename(v, f->suburb) : 0;
  case 4: /* it moves house */ v->st->contacts_edited++; return move_house(v, id);
  default: /* e-mail edits, the intermediate one delivered late */
    v->st->contacts_edited++;
    return set_email(v, id, true);
  }
}

int gen_wave(gen_customer *c, gen_writer *w, unsigned k, uint32_t changes, gen_wave_stats *st) {
  wave v = {c, w, st};
  uint64_t written = w->written;
  memset(st, 0, sizeof *st);
  gen_writer_wave(w, k, gen_wave_start(k));
  /* The sync re-sends the end of its last delivery: each resend of the line `back` before the
   * newest also becomes the newest, so sending `back` n times sends the last n in order. */
  uint32_t again = changes / 100 + 1;
  for (uint32_t i = 0; i < again; i++) {
    int rc = gen_writer_resend_last(w, again - 1);
    if (rc < 0) return -1;
    st->duplicates += rc == 0;
  }
  if (featured(&v, k)) return -1;
  for (uint32_t i = 0; i < changes / 2000 + (k == 3 ? 0 : 1); i++)
    if (c->suburbs.n && suburb_rename(&v, 1 + gen_below(c, c->suburbs.n))) return -1;
  while (w->seq < changes) {
    int rc = one_change(&v, k);
    if (rc < 0) return -1;
    if (rc > 0) break;
    if (gen_chance(c, P_DUPLICATE)) {
      if ((rc = gen_writer_resend(w, gen_rand(c))) < 0) return -1;
      st->duplicates += rc == 0;
    }
  }
  if (gen_writer_flush_late(w)) return -1;
  st->lines = (uint32_t)(w->written - written);
  return w->failed ? -1 : 0;
}

void gen_wave_describe(const gen_wave_stats *s, unsigned k, char *out, size_t size) {
  size_t n = 0;
#define ADD(...)                                                                                   \
  do {                                                                                             \
    int r_ = snprintf(out + n, size - n, __VA_ARGS__);                                             \
    if (r_ < 0 || (size_t)r_ >= size - n) return;                                                  \
    n += (size_t)r_;                                                                               \
  } while (0)
  ADD("wave %u: %u lines, %u of them sent twice, %u delivered late\n", k, s->lines, s->duplicates,
      s->late);
  ADD("  contacts    %u edited, %u touched (an unmapped column only), %u new, %u archived, "
      "%u restored, %u deleted\n",
      s->contacts_edited, s->contacts_touched, s->contacts_new, s->contacts_archived,
      s->contacts_restored, s->contacts_deleted);
  ADD("  phones      %u edited, %u new, %u moved to another contact, %u deleted\n",
      s->phones_edited, s->phones_new, s->phones_moved, s->phones_deleted);
  ADD("  properties  %u edited, %u sold, %u new, %u lost or archived\n", s->properties_edited,
      s->properties_sold, s->properties_new, s->properties_gone);
  ADD("  tenancies   %u new, %u ended, %u re-priced, %u archived or deleted\n", s->tenancies_new,
      s->tenancies_ended, s->tenancies_repriced, s->tenancies_gone);
  if (s->suburbs_renamed == 1)
    ADD("  suburbs     1 renamed: %s -> %s (%u contacts and properties in it)\n", s->renamed_from,
        s->renamed_to, s->rename_reach);
  else if (s->suburbs_renamed)
    ADD("  suburbs     %u renamed: %s -> %s, ... (%u contacts and properties in them)\n",
        s->suburbs_renamed, s->renamed_from, s->renamed_to, s->rename_reach);
#undef ADD
}
