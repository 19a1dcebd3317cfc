/*
 * The lookup structures of a loaded configuration. Key lines are a plain
 * array searched from the front: they are read only on error paths. The
 * customer index is an array of pointers sorted by id, searched with bsearch,
 * because the service looks a customer up on every request and a deployment
 * may list many thousand.
 */
#include "config/lookup.h"

#include <stdlib.h>
#include <string.h>

typedef struct key_line {
  char *key;
  size_t line;
} key_line;

struct ferry_config_lookup {
  key_line *keys;
  size_t nkeys, capkeys;
  const ferry_customer_config **by_id; /* into cfg->customers; NULL: not indexed */
  size_t nby_id;
};

static ferry_status ensure(ferry_config *cfg) {
  if (!cfg->lookup) cfg->lookup = calloc(1, sizeof *cfg->lookup);
  return cfg->lookup ? FERRY_OK : FERRY_ENOMEM;
}

ferry_status ferry_config_lookup_add_key(ferry_config *cfg, const char *key, size_t line) {
  ferry_status st = ensure(cfg);
  struct ferry_config_lookup *l = cfg->lookup;
  char *copy = NULL;

  if (st) goto done;
  if (l->nkeys == l->capkeys) {
    /* the file is capped (FERRY_CONFIG_MAX_BYTES), and with it the count */
    size_t cap = l->capkeys ? l->capkeys * 2 : 32;
    key_line *v = realloc(l->keys, cap * sizeof *v);
    if (!v) {
      st = FERRY_ENOMEM;
      goto done;
    }
    l->keys = v;
    l->capkeys = cap;
  }
  copy = strdup(key);
  if (!copy) {
    st = FERRY_ENOMEM;
    goto done;
  }
  l->keys[l->nkeys].key = copy;
  l->keys[l->nkeys].line = line;
  l->nkeys++;

done:
  return st;
}

size_t ferry_config_lookup_line(const struct ferry_config_lookup *lookup, const char *key) {
  if (!lookup || !key) return 0;
  for (size_t i = 0; i < lookup->nkeys; i++)
    if (strcmp(lookup->keys[i].key, key) == 0) return lookup->keys[i].line;
  return 0;
}

static int cmp_customers(const void *pa, const void *pb) {
  const ferry_customer_config *a = *(const ferry_customer_config *const *)pa;
  const ferry_customer_config *b = *(const ferry_customer_config *const *)pb;
  return strcmp(a->id, b->id);
}

static int cmp_id(const void *key, const void *elem) {
  return strcmp(key, (*(const ferry_customer_config *const *)elem)->id);
}

ferry_status ferry_config_lookup_index_customers(ferry_config *cfg) {
  ferry_status st = ensure(cfg);
  const ferry_customer_config **v = NULL;

  if (st) goto done;
  /* malloc(0) may give NULL; one slot more keeps "not indexed" apart */
  v = malloc((cfg->ncustomers + 1) * sizeof *v);
  if (!v) {
    st = FERRY_ENOMEM;
    goto done;
  }
  for (size_t i = 0; i < cfg->ncustomers; i++)
    v[i] = &cfg->customers[i];
  qsort(v, cfg->ncustomers, sizeof *v, cmp_customers);
  free(cfg->lookup->by_id);
  cfg->lookup->by_id = v;
  cfg->lookup->nby_id = cfg->ncustomers;

done:
  return st;
}

int ferry_config_lookup_customer(const ferry_config *cfg, const char *customer,
                                 const ferry_customer_config **found) {
  const struct ferry_config_lookup *l = cfg->lookup;
  const ferry_customer_config *const *hit;

  if (!l || !l->by_id) return 0;
  hit = bsearch(customer, l->by_id, l->nby_id, sizeof *l->by_id, cmp_id);
  *found = hit ? *hit : NULL;
  return 1;
}

void ferry_config_lookup_free(struct ferry_config_lookup *lookup) {
  if (!lookup) return;
  free(lookup->by_id);
  for (size_t i = 0; i < lookup->nkeys; i++)
    free(lookup->keys[i].key);
  free(lookup->keys);
  free(lookup);
}
