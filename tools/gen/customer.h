/* ferry-gen's customer: the rows of a legacy property-management product, held in arrays.
 *
 * Five tables, each row addressed by its integer id (index + 1; ids are never reused, a deleted
 * row stays in its array with live = false):
 *
 *   Suburbs        SuburbID, Name, Postcode, State
 *   Contacts       ContactID, FirstName, Surname, Email, ContactType, Street, SuburbID,
 *                  IsArchived, ModifiedAt
 *   ContactPhones  PhoneID, ContactID, Number, PhoneType, Position
 *   Properties     PropertyID, StreetNo, StreetName, SuburbID, OwnerContactID, PropertyType,
 *                  Bedrooms (text), Status, IsArchived
 *   Tenancies      TenancyID, PropertyID, TenantContactID, StartDate, EndDate ("" while open),
 *                  WeeklyRent (text, "650.00"), Status, IsArchived
 *
 * The data has the quirks a real legacy product has and the sample mapping deals with: e-mail
 * addresses in mixed case, with stray spaces, empty or missing; phone numbers in any format;
 * numbers stored as text; archived rows. Everything comes from one seeded generator, so the same
 * sizes and seed give the same customer byte for byte.
 */
#ifndef GEN_CUSTOMER_H
#define GEN_CUSTOMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ndjson.h"

/* The contact whose story the demo tells: each wave gives it a scripted change. */
#define GEN_FEATURED_CONTACT 42

typedef struct gen_sizes {
  uint32_t contacts, phones, properties, tenancies, suburbs;
} gen_sizes;

enum { CT_OWNER, CT_TENANT, CT_SUPPLIER, CT_APPLICANT };
enum { PT_MOBILE, PT_HOME, PT_WORK };
enum { PS_MANAGED, PS_LOST, PS_WITHDRAWN }; /* lost or withdrawn: not migrated */
enum { TS_ACTIVE, TS_ENDED, TS_PENDING, TS_DRAFT };

typedef struct gen_suburb {
  uint32_t version;
  uint32_t postcode;
  char name[48];
  char state[4];
} gen_suburb;

typedef struct gen_contact {
  uint32_t version, suburb; /* suburb 0: none */
  uint32_t next_position;   /* Position of the next phone it gets */
  uint8_t type;
  bool live, archived, email_null;
  char first[32], last[32], email[96], street[64]; /* street "": NULL */
} gen_contact;

typedef struct gen_phone {
  uint32_t version, contact, position;
  uint8_t kind;
  bool live;
  char number[24];
} gen_phone;

typedef struct gen_property {
  uint32_t version, street_no, suburb, owner; /* owner 0: unknown */
  uint8_t type, bedrooms, status;
  bool live, archived;
  char street[40];
} gen_property;

typedef struct gen_tenancy {
  uint32_t version, property, tenant, rent_cents;
  int64_t start, end; /* Unix days * 86400; end 0: open */
  uint8_t status;
  bool live, archived;
} gen_tenancy;

/* A growable array of rows of one table. */
#define GEN_TABLE(T)                                                                               \
  struct {                                                                                         \
    T *v;                                                                                          \
    uint32_t n, cap;                                                                               \
  }

typedef struct gen_customer {
  uint64_t rng;
  GEN_TABLE(gen_suburb) suburbs;
  GEN_TABLE(gen_contact) contacts;
  GEN_TABLE(gen_phone) phones;
  GEN_TABLE(gen_property) properties;
  GEN_TABLE(gen_tenancy) tenancies;
} gen_customer;

/* Builds the customer's rows for sizes and seed in *c (no lines written). Returns 0, or -1
 * when out of memory (c is then freed). */
int gen_customer_build(gen_customer *c, const gen_sizes *sizes, uint64_t seed);

/* Frees the rows; accepts a zeroed or half-built customer. */
void gen_customer_free(gen_customer *c);

/* Writes every row as an upsert, table by table (suburbs first). Returns 0 or -1. */
int gen_customer_snapshot(gen_customer *c, gen_writer *w);

/* New rows, appended to their table with version 1 and not yet written. Each returns the new
 * row's id, or 0 when out of memory. */
uint32_t gen_contact_new(gen_customer *c);
uint32_t gen_phone_new(gen_customer *c, uint32_t contact);
uint32_t gen_property_new(gen_customer *c);
uint32_t gen_tenancy_new(gen_customer *c);

/* Formats row `id` of a table as a change with its current state and version: an upsert, or a
 * delete when the row is no longer live. The caller sends or holds the line. */
void gen_suburb_line(gen_customer *c, gen_writer *w, uint32_t id, gen_line *l);
void gen_contact_line(gen_customer *c, gen_writer *w, uint32_t id, gen_line *l);
void gen_phone_line(gen_customer *c, gen_writer *w, uint32_t id, gen_line *l);
void gen_property_line(gen_customer *c, gen_writer *w, uint32_t id, gen_line *l);
void gen_tenancy_line(gen_customer *c, gen_writer *w, uint32_t id, gen_line *l);

/* Random picks and values shared with the change waves. */
uint64_t gen_rand(gen_customer *c);
uint32_t gen_below(gen_customer *c, uint32_t n); /* 0 .. n-1; n > 0 */
bool gen_chance(gen_customer *c, double p);
void gen_random_email(gen_customer *c, gen_contact *k);
void gen_ascii_lower(const char *s, char *out, size_t size); /* what an address keeps of a name */
void gen_random_number(gen_customer *c, gen_phone *p);
void gen_random_street(gen_customer *c, char *out, size_t size, uint32_t *number_out);
void gen_random_suburb_name(gen_customer *c, char out[48]);

/* A live contact (not archived, unless any), a live contact of one type, a live phone, a live
 * property or tenancy, or 0 when there is none. Never the featured contact unless featured_ok. */
uint32_t gen_pick_contact(gen_customer *c, bool any, bool featured_ok);
uint32_t gen_pick_contact_of(gen_customer *c, uint8_t type);
uint32_t gen_pick_phone(gen_customer *c);
uint32_t gen_pick_property(gen_customer *c);
uint32_t gen_pick_tenancy(gen_customer *c);

#endif
