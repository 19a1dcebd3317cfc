/*
 * Walking customers: a family holds one contiguous key range per customer,
 * so after reading one key the walk seeks straight past that customer's
 * range. The cost is a seek per customer, not a step per key.
 */
#include <stdlib.h>
#include <string.h>

#include "log/store_impl.h"

ferry_status store_walk_customers(ferry_store *s, ferry_cf cf, store_customer_fn fn, void *arg,
                                  ferry_error *err) {
  rdb_iter it;
  key_prefix p;
  char name[FERRY_CUSTOMER_MAX + 1];
  bool stop = false;
  ferry_status st = rdb_iter_open(&it, s, cf, NULL, 0, NULL, 0, err);
  if (st) return st;
  while (!stop && rocksdb_iter_valid(it.it)) {
    size_t klen;
    const char *k = rocksdb_iter_key(it.it, &klen);
    if (!key_prefix_parse(&p, k, klen, name)) {
      st = ferry_error_set(err, FERRY_ECORRUPT, "key without a customer prefix in family %s",
                           rdb_cf_names[cf]);
      goto done;
    }
    if ((st = fn(arg, &p, name, &stop, err))) goto done;
    rocksdb_iter_seek(it.it, p.upper, p.len);
  }
  st = rdb_iter_status(&it, err, "cannot list customers");
done:
  rdb_iter_close(&it);
  return st;
}

typedef struct name_list {
  ferry_store *s;
  char **names;
  size_t n, cap;
} name_list;

static ferry_status collect(void *arg, const key_prefix *p, const char *name, bool *stop,
                            ferry_error *err) {
  name_list *l = arg;
  char key[KEY_PREFIX_MAX + KEY_META_HEAD_LEN];
  char *errmsg = NULL;
  size_t vlen = 0;
  (void)stop;
  /* The meta family also holds other modules' records; only a head means a log. */
  memcpy(key, p->b, p->len);
  memcpy(key + p->len, KEY_META_HEAD, KEY_META_HEAD_LEN);
  char *v = rocksdb_get_cf(l->s->db, l->s->ro, l->s->cf[FERRY_CF_META], key,
                           p->len + KEY_META_HEAD_LEN, &vlen, &errmsg);
  ferry_status st = rdb_check(errmsg, err, "cannot read the head of customer %s", name);
  if (st || !v) return st;
  rocksdb_free(v);
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 64;
    char **names = realloc(l->names, cap * sizeof *names);
    if (!names) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
    l->names = names;
    l->cap = cap;
  }
  if (!(l->names[l->n] = strdup(name))) return ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  l->n++;
  return FERRY_OK;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

ferry_status ferry_store_customers(ferry_store *s, ferry_customer_fn fn, void *arg,
                                   ferry_error *err) {
  name_list l = {s, NULL, 0, 0};
  if (!s || !fn)
    return ferry_error_set(err, FERRY_EINVAL, "ferry_store_customers: invalid arguments");
  /* Keys order customers by length first; the contract is byte order of the id. */
  ferry_status st = store_walk_customers(s, FERRY_CF_META, collect, &l, err);
  if (st) goto done;
  if (l.n) qsort(l.names, l.n, sizeof *l.names, cmp_names); /* qsort(NULL, 0) is undefined */
  for (size_t i = 0; i < l.n; i++) {
    if (fn(arg, l.names[i])) break;
  }
done:
  for (size_t i = 0; i < l.n; i++)
    free(l.names[i]);
  free(l.names);
  return st;
}
