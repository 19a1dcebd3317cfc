/* ferry-gen's customer: building the rows, formatting them as changes, random picks. See
 * customer.h for the tables. */
#include "customer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloudsim/rng.h" /* the reference cloud's splitmix64: one generator for the tools */

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define DAY 86400
#define EPOCH_2023 1672531200 /* 2023-01-01T00:00:00Z */

static const char *const FIRST[] = {
    "Ann",     "Bob",     "Chen",  "Deepa", "Eli",      "Fatima", "George",  "Hana",
    "Ivan",    "Jia",     "Kate",  "Liam",  "Mia",      "Noah",   "Olivia",  "Priya",
    "Quinn",   "Ravi",    "Sofia", "Tom",   "Uma",      "Victor", "Wei",     "Xavier",
    "Yusuf",   "Zoë",     "José",  "Aroha", "Mohammed", "Grace",  "Jack",    "Charlotte",
    "Oliver",  "Amelia",  "Lucas", "Isla",  "Ethan",    "Ava",    "James",   "Harper",
    "William", "Mila",    "Henry", "Ruby",  "Leo",      "Chloe",  "Lachlan", "Matilda",
    "Hamish",  "Siobhan", "Mei",   "Arjun", "Anaïs",    "Björn",  "Nikau",   "Kiri"};
static const char *const LAST[] = {
    "Smith",    "Nguyen",  "Jones",  "Williams",     "Brown",    "Wilson",   "Taylor",
    "Johnson",  "White",   "Martin", "Anderson",     "Thompson", "Tran",     "Thomas",
    "Walker",   "Harris",  "Lee",    "Ryan",         "Robinson", "Kelly",    "King",
    "Davis",    "Wright",  "Evans",  "Roberts",      "Green",    "Hall",     "Wood",
    "Jackson",  "Clarke",  "Patel",  "Khan",         "Singh",    "Chen",     "Wang",
    "Li",       "Zhang",   "Liu",    "O'Brien",      "O'Connor", "McDonald", "MacKenzie",
    "Campbell", "Stewart", "Murphy", "Papadopoulos", "Rossi",    "Russo",    "Kowalski",
    "Müller",   "García",  "Ngata",  "Te Rangi",     "Hohaia"};
static const char *const STREET[] = {
    "Smith",    "King",    "Queen",     "George",  "Church",  "High",    "Station", "Park",
    "Victoria", "Albert",  "Elizabeth", "William", "Bridge",  "Railway", "Main",    "Hill",
    "Beach",    "Ocean",   "Forest",    "River",   "Mill",    "School",  "Market",  "Union",
    "Wattle",   "Banksia", "Jacaranda", "Acacia",  "Waratah", "Kauri"};
static const char *const STREET_TYPE[] = {"St",   "Rd", "Ave", "Pde", "Cres",
                                          "Lane", "Dr", "Pl",  "Ct",  "Tce"};
/* clang-format off */
static const char *const SUBURB[] = {
    "Newtown", "Glebe", "Balmain", "Paddington", "Randwick", "Coogee", "Bondi", "Manly", "Mosman",
    "Chatswood", "Parramatta", "Penrith", "Blacktown", "Liverpool", "Hornsby", "Epping", "Ryde",
    "Strathfield", "Burwood", "Ashfield", "Marrickville", "Leichhardt", "Annandale", "Redfern",
    "Surry Hills", "Darlinghurst", "Potts Point", "Kirribilli", "Neutral Bay", "Cremorne",
    "Fitzroy", "Carlton", "Brunswick", "Richmond", "Collingwood", "Northcote", "Preston", "Coburg",
    "Footscray", "Yarraville", "Williamstown", "St Kilda", "Elwood", "Brighton", "Hawthorn", "Kew",
    "Camberwell", "Box Hill", "Toowong", "Indooroopilly", "Chermside", "Ashgrove", "Bulimba",
    "New Farm", "Woolloongabba", "Kangaroo Point", "Red Hill", "Paddington Rise", "Sandgate",
    "Wynnum"};
/* clang-format on */
static const char *const SUBURB_SUFFIX[] = {"",         " North", " South", " East", " West",
                                            " Heights", " Park",  " Vale",  " Hills"};
static const char *const RENAMED[] = {" Village", " Gardens", " Waters",
                                      " Point",   " Grove",   " Meadows"};
static const char *const DOMAIN[] = {"example.com", "mail.example", "example.net",
                                     "inbox.example.org"};
static const char *const CONTACT_TYPE[] = {"Owner", "Tenant", "Supplier", "Applicant"};
static const char *const PHONE_TYPE[] = {"Mobile", "Home", "Work"};
static const char *const PROPERTY_TYPE[] = {"House", "Unit", "Townhouse"};
static const char *const PROPERTY_STATUS[] = {"Managed", "Lost", "Withdrawn"};
static const char *const TENANCY_STATUS[] = {"Active", "Ended", "Pending", "Draft"};

/* ---- randomness ----------------------------------------------------------------------------- */

uint64_t gen_rand(gen_customer *c) {
  return cs_rng_next(&c->rng);
}

uint32_t gen_below(gen_customer *c, uint32_t n) {
  return (uint32_t)(gen_rand(c) % n);
}

bool gen_chance(gen_customer *c, double p) {
  return (double)(gen_rand(c) >> 11) / 9007199254740992.0 < p;
}

static const char *pick(gen_customer *c, const char *const *list, size_t n) {
  return list[gen_below(c, (uint32_t)n)];
}

/* ---- growing the tables -----------------------------------------------------------------------
 */

/* Makes room for one more row in a table; returns the new row (zeroed) or NULL. */
static void *grow(void **v, uint32_t *n, uint32_t *cap, size_t size) {
  if (*n == *cap) {
    uint32_t ncap = *cap ? *cap * 2 : 64;
    void *nv = realloc(*v, (size_t)ncap * size);
    if (!nv) return NULL;
    *v = nv;
    *cap = ncap;
  }
  void *row = (char *)*v + (size_t)(*n)++ * size;
  memset(row, 0, size);
  return row;
}
#define GROW(t) grow((void **)&(t).v, &(t).n, &(t).cap, sizeof *(t).v)

void gen_customer_free(gen_customer *c) {
  free(c->suburbs.v);
  free(c->contacts.v);
  free(c->phones.v);
  free(c->properties.v);
  free(c->tenancies.v);
  memset(c, 0, sizeof *c);
}

/* ---- values -----------------------------------------------------------------------------------
 */

void gen_ascii_lower(const char *s, char *out, size_t size) {
  size_t n = 0;
  for (; *s && n + 1 < size; s++)
    if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')) out[n++] = (char)(*s | 0x20);
  out[n] = 0;
}

void gen_random_email(gen_customer *c, gen_contact *k) {
  char first[32], last[32], addr[80];
  uint32_t shape = gen_below(c, 100);
  gen_ascii_lower(k->first, first, sizeof first);
  gen_ascii_lower(k->last, last, sizeof last);
  snprintf(addr, sizeof addr, "%s.%s%u@%s", first, last, gen_below(c, 100),
           pick(c, DOMAIN, NELEM(DOMAIN)));
  k->email_null = false;
  if (shape < 60) { /* as it should be */
    snprintf(k->email, sizeof k->email, "%s", addr);
  } else if (shape < 80) { /* typed in by hand: capitals */
    snprintf(k->email, sizeof k->email, "%s", addr);
    if (k->email[0] >= 'a' && k->email[0] <= 'z') k->email[0] = (char)(k->email[0] & ~0x20);
    for (char *p = strchr(k->email, '@'); p && *p; p++)
      if (*p >= 'a' && *p <= 'z' && gen_chance(c, 0.5)) *p = (char)(*p & ~0x20);
  } else if (shape < 87) { /* pasted: stray spaces */
    snprintf(k->email, sizeof k->email, "  %s ", addr);
  } else if (shape < 90) { /* the legacy form saved an empty box */
    k->email[0] = 0;
  } else {
    k->email[0] = 0;
    k->email_null = true;
  }
}

void gen_random_number(gen_customer *c, gen_phone *p) {
  switch (p->kind) {
  case PT_MOBILE:
    snprintf(p->number, sizeof p->number, "04%02u %03u %03u", gen_below(c, 100), gen_below(c, 1000),
             gen_below(c, 1000));
    break;
  case PT_HOME:
    snprintf(p->number, sizeof p->number, "(0%u) %04u %04u", 2 + gen_below(c, 7),
             gen_below(c, 10000), gen_below(c, 10000));
    break;
  default:
    snprintf(p->number, sizeof p->number, "+61 %u %04u %04u", 2 + gen_below(c, 7),
             gen_below(c, 10000), gen_below(c, 10000));
  }
}

void gen_random_street(gen_customer *c, char *out, size_t size, uint32_t *number_out) {
  uint32_t number = 1 + gen_below(c, 250);
  const char *name = pick(c, STREET, NELEM(STREET)),
             *type = pick(c, STREET_TYPE, NELEM(STREET_TYPE));
  if (number_out) {
    *number_out = number;
    snprintf(out, size, "%s %s", name, type);
  } else {
    snprintf(out, size, "%u %s %s", number, name, type);
  }
}

void gen_random_suburb_name(gen_customer *c, char out[48]) {
  snprintf(out, 48, "%s%s", pick(c, SUBURB, NELEM(SUBURB)), pick(c, RENAMED, NELEM(RENAMED)));
}

/* ---- new rows ---------------------------------------------------------------------------------
 */

static int suburb_new(gen_customer *c) {
  gen_suburb *s = GROW(c->suburbs);
  if (!s) return -1;
  uint32_t i = c->suburbs.n - 1;
  s->version = 1;
  snprintf(s->name, sizeof s->name, "%s%s", SUBURB[i % NELEM(SUBURB)],
           SUBURB_SUFFIX[(i / NELEM(SUBURB)) % NELEM(SUBURB_SUFFIX)]);
  s->postcode = 2000 + (i * 37) % 1900;
  snprintf(s->state, sizeof s->state, "%s", i % 3 == 0 ? "NSW" : i % 3 == 1 ? "VIC" : "QLD");
  return 0;
}

uint32_t gen_contact_new(gen_customer *c) {
  gen_contact *k = GROW(c->contacts);
  if (!k) return 0;
  uint32_t id = c->contacts.n, shape = gen_below(c, 100);
  k->version = 1;
  k->live = true;
  k->next_position = 1;
  k->type = shape < 30   ? CT_OWNER
            : shape < 75 ? CT_TENANT
            : shape < 85 ? CT_SUPPLIER
                         : CT_APPLICANT;
  snprintf(k->first, sizeof k->first, "%s", pick(c, FIRST, NELEM(FIRST)));
  snprintf(k->last, sizeof k->last, "%s", pick(c, LAST, NELEM(LAST)));
  gen_random_email(c, k);
  shape = gen_below(c, 100);
  if (shape >= 5) k->suburb = c->suburbs.n ? 1 + gen_below(c, c->suburbs.n) : 0;
  if (shape >= 10) gen_random_street(c, k->street, sizeof k->street, NULL);
  k->archived = id != GEN_FEATURED_CONTACT && gen_chance(c, 0.03);
  if (id == GEN_FEATURED_CONTACT) { /* the demo's story needs an address and an e-mail */
    if (!k->suburb && c->suburbs.n) k->suburb = 1;
    if (!k->street[0]) gen_random_street(c, k->street, sizeof k->street, NULL);
    for (int tries = 0; tries < 100 && !k->email[0]; tries++)
      gen_random_email(c, k);
  }
  return id;
}

uint32_t gen_phone_new(gen_customer *c, uint32_t contact) {
  gen_phone *p = GROW(c->phones);
  if (!p) return 0;
  uint32_t shape = gen_below(c, 100);
  p->version = 1;
  p->live = true;
  p->contact = contact;
  p->position = c->contacts.v[contact - 1].next_position++;
  p->kind = shape < 50 ? PT_MOBILE : shape < 85 ? PT_HOME : PT_WORK;
  gen_random_number(c, p);
  return c->phones.n;
}

uint32_t gen_property_new(gen_customer *c) {
  gen_property *p = GROW(c->properties);
  if (!p) return 0;
  uint32_t shape = gen_below(c, 100);
  p->version = 1;
  p->live = true;
  gen_random_street(c, p->street, sizeof p->street, &p->street_no);
  p->suburb = c->suburbs.n ? 1 + gen_below(c, c->suburbs.n) : 0;
  p->owner = gen_chance(c, 0.95) ? gen_pick_contact_of(c, CT_OWNER) : 0;
  p->type = shape < 50 ? 0 : shape < 85 ? 1 : 2;
  p->bedrooms = (uint8_t)(1 + gen_below(c, 5));
  shape = gen_below(c, 100);
  p->status = shape < 2 ? PS_LOST : shape < 3 ? PS_WITHDRAWN : PS_MANAGED;
  p->archived = gen_chance(c, 0.02);
  return c->properties.n;
}

uint32_t gen_tenancy_new(gen_customer *c) {
  gen_tenancy *t = GROW(c->tenancies);
  if (!t) return 0;
  uint32_t shape = gen_below(c, 100);
  t->version = 1;
  t->live = true;
  t->property = gen_pick_property(c);
  t->tenant = gen_pick_contact_of(c, CT_TENANT);
  t->start = EPOCH_2023 + (int64_t)gen_below(c, 1000) * DAY;
  t->rent_cents = (300 + 5 * gen_below(c, 240)) * 100;
  t->status = shape < 65 ? TS_ACTIVE : shape < 90 ? TS_ENDED : shape < 95 ? TS_PENDING : TS_DRAFT;
  if (t->status == TS_ENDED) t->end = t->start + (180 + (int64_t)gen_below(c, 540)) * DAY;
  t->archived = gen_chance(c, 0.02);
  return c->tenancies.n;
}

int gen_customer_build(gen_customer *c, const gen_sizes *z, uint64_t seed) {
  memset(c, 0, sizeof *c);
  c->rng = seed;
  for (uint32_t i = 0; i < z->suburbs; i++)
    if (suburb_new(c)) goto oom;
  for (uint32_t i = 0; i < z->contacts; i++)
    if (!gen_contact_new(c)) goto oom;
  for (uint32_t i = 0; i < z->phones && c->contacts.n; i++) {
    /* the featured contact starts with two phones */
    uint32_t owner = i < 2 && c->contacts.n >= GEN_FEATURED_CONTACT
                         ? GEN_FEATURED_CONTACT
                         : 1 + gen_below(c, c->contacts.n);
    if (!gen_phone_new(c, owner)) goto oom;
  }
  for (uint32_t i = 0; i < z->properties; i++)
    if (!gen_property_new(c)) goto oom;
  for (uint32_t i = 0; i < z->tenancies; i++)
    if (!gen_tenancy_new(c)) goto oom;
  return 0;
oom:
  gen_customer_free(c);
  return -1;
}

/* ---- picks ------------------------------------------------------------------------------------
 */

/* Draws up to 64 random ids for one that ok() accepts, then scans from a random start. */
#define PICK(table, accept)                                                                        \
  do {                                                                                             \
    uint32_t n_ = (table).n;                                                                       \
    if (!n_) return 0;                                                                             \
    for (int try_ = 0; try_ < 64; try_++) {                                                        \
      uint32_t id = 1 + gen_below(c, n_);                                                          \
      if (accept) return id;                                                                       \
    }                                                                                              \
    uint32_t from_ = gen_below(c, n_);                                                             \
    for (uint32_t k_ = 0; k_ < n_; k_++) {                                                         \
      uint32_t id = 1 + (from_ + k_) % n_;                                                         \
      if (accept) return id;                                                                       \
    }                                                                                              \
    return 0;                                                                                      \
  } while (0)

uint32_t gen_pick_contact(gen_customer *c, bool any, bool featured_ok) {
  PICK(c->contacts, c->contacts.v[id - 1].live && (any || !c->contacts.v[id - 1].archived) &&
                        (featured_ok || id != GEN_FEATURED_CONTACT));
}

uint32_t gen_pick_contact_of(gen_customer *c, uint8_t type) {
  PICK(c->contacts, c->contacts.v[id - 1].live && c->contacts.v[id - 1].type == type);
}

uint32_t gen_pick_phone(gen_customer *c) {
  PICK(c->phones, c->phones.v[id - 1].live);
}

uint32_t gen_pick_property(gen_customer *c) {
  PICK(c->properties, c->properties.v[id - 1].live);
}

uint32_t gen_pick_tenancy(gen_customer *c) {
  PICK(c->tenancies, c->tenancies.v[id - 1].live);
}

/* ---- rows as changes --------------------------------------------------------------------------
 */

/* Begins the change of a row: a delete when it is gone, else an upsert whose row follows. */
static bool begin(gen_writer *w, gen_line *l, const char *table, uint32_t id, bool live,
                  uint32_t version, char ts[32]) {
  gen_line_begin(w, l, table, id, live ? "upsert" : "delete", version, ts);
  return live;
}

void gen_suburb_line(gen_customer *c, gen_writer *w, uint32_t id, gen_line *l) {
  const gen_suburb *s = &c->suburbs.v[id - 1];
  begin(w, l, "Suburbs", id, true, s->version, NULL);
  gen_col_int(l, "SuburbID", id);
  gen_col_str(l, "Name", s->name);
  gen_col_int(l, "Postcode", s->postcode);
  gen_col_str(l, "State", s->state);
}

void gen_contact_line(gen_customer *c, gen_writer *w, uint32_t id, gen_line *l) {
  const gen_contact *k = &c->contacts.v[id - 1];
  char ts[32];
  if (!begin(w, l, "Contacts", id, k->live, k->version, ts)) return;
  gen_col_int(l, "ContactID", id);
  gen_col_str(l, "FirstName", k->first);
  gen_col_str(l, "Surname", k->last);
  gen_col_str(l, "Email", k->email_null ? NULL : k->email);
  gen_col_str(l, "ContactType", CONTACT_TYPE[k->type]);
  gen_col_str(l, "Street", k->street[0] ? k->street : NULL);
  gen_col_ref(l, "SuburbID", k->suburb);
  gen_col_bool(l, "IsArchived", k->archived);
  gen_col_str(l, "ModifiedAt", ts);
}

void gen_phone_line(gen_customer *c, gen_writer *w, uint32_t id, gen_line *l) {
  const gen_phone *p = &c->phones.v[id - 1];
  if (!begin(w, l, "ContactPhones", id, p->live, p->version, NULL)) return;
  gen_col_int(l, "PhoneID", id);
  gen_col_int(l, "ContactID", p->contact);
  gen_col_str(l, "Number", p->number);
  gen_col_str(l, "PhoneType", PHONE_TYPE[p->kind]);
  gen_col_int(l, "Position", p->position);
}

void gen_property_line(gen_customer *c, gen_writer *w, uint32_t id, gen_line *l) {
  const gen_property *p = &c->properties.v[id - 1];
  char bedrooms[4];
  if (!begin(w, l, "Properties", id, p->live, p->version, NULL)) return;
  snprintf(bedrooms, sizeof bedrooms, "%u", p->bedrooms);
  gen_col_int(l, "PropertyID", id);
  gen_col_int(l, "StreetNo", p->street_no);
  gen_col_str(l, "StreetName", p->street);
  gen_col_ref(l, "SuburbID", p->suburb);
  gen_col_ref(l, "OwnerContactID", p->owner);
  gen_col_str(l, "PropertyType", PROPERTY_TYPE[p->type]);
  gen_col_str(l, "Bedrooms", bedrooms);
  gen_col_str(l, "Status", PROPERTY_STATUS[p->status]);
  gen_col_bool(l, "IsArchived", p->archived);
}

void gen_tenancy_line(gen_customer *c, gen_writer *w, uint32_t id, gen_line *l) {
  const gen_tenancy *t = &c->tenancies.v[id - 1];
  char start[16], end[16] = "", rent[24];
  if (!begin(w, l, "Tenancies", id, t->live, t->version, NULL)) return;
  gen_format_date(t->start, start);
  if (t->end) gen_format_date(t->end, end);
  snprintf(rent, sizeof rent, "%u.%02u", t->rent_cents / 100, t->rent_cents % 100);
  gen_col_int(l, "TenancyID", id);
  gen_col_ref(l, "PropertyID", t->property);
  gen_col_ref(l, "TenantContactID", t->tenant);
  gen_col_str(l, "StartDate", start);
  gen_col_str(l, "EndDate", end);
  gen_col_str(l, "WeeklyRent", rent);
  gen_col_str(l, "Status", TENANCY_STATUS[t->status]);
  gen_col_bool(l, "IsArchived", t->archived);
}

/* ---- the snapshot -----------------------------------------------------------------------------
 */

int gen_customer_snapshot(gen_customer *c, gen_writer *w) {
  gen_line l;
  int rc = 0;
  for (uint32_t i = 1; i <= c->suburbs.n && !rc; i++)
    gen_suburb_line(c, w, i, &l), rc = gen_line_send(w, &l);
  for (uint32_t i = 1; i <= c->contacts.n && !rc; i++)
    gen_contact_line(c, w, i, &l), rc = gen_line_send(w, &l);
  for (uint32_t i = 1; i <= c->phones.n && !rc; i++)
    gen_phone_line(c, w, i, &l), rc = gen_line_send(w, &l);
  for (uint32_t i = 1; i <= c->properties.n && !rc; i++)
    gen_property_line(c, w, i, &l), rc = gen_line_send(w, &l);
  for (uint32_t i = 1; i <= c->tenancies.n && !rc; i++)
    gen_tenancy_line(c, w, i, &l), rc = gen_line_send(w, &l);
  return rc;
}
