/*
 * Backups that are safe to restore against any cloud.
 *
 * A backup is a RocksDB checkpoint of the data directory (ferry_store_backup).
 * Put back in place later, it knows nothing of what ferry did after it was
 * taken: a record ferry created since is, to the restored copy, an entity not
 * yet created, and a cloud that ignores Idempotency-Key would get it twice.
 * So the copy marks every customer "restored" (ProjectionState.restored):
 * each create then looks its record up by external key first and adopts a
 * match, exactly as after a crash, until a sync ends with nothing failed,
 * unknown or waiting. The live directory is never marked.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "projector/proj.h"

typedef struct names {
  char **v;
  size_t n, cap;
  bool oom;
} names;

static int add_name(void *arg, const char *customer) {
  names *ns = arg;
  if (ns->n == ns->cap) {
    size_t cap = ns->cap ? ns->cap * 2 : 16;
    char **v = realloc(ns->v, cap * sizeof *v);
    if (!v) return ns->oom = true;
    ns->v = v;
    ns->cap = cap;
  }
  if (!(ns->v[ns->n] = strdup(customer))) return ns->oom = true;
  ns->n++;
  return 0;
}

/* Sets restored in one customer's checkpoint (creating one if it has none). */
static ferry_status mark(ferry_store *s, const char *customer, ferry_error *err) {
  char *val = NULL;
  size_t vlen = 0;
  ferry_status st = ferry_kv_get(s, FERRY_CF_META, customer, FERRY_META_PROJECTION,
                                 strlen(FERRY_META_PROJECTION), &val, &vlen, err);
  Ferry__V1__ProjectionState *old = NULL, fresh = FERRY__V1__PROJECTION_STATE__INIT, *ps = &fresh;
  if (st == FERRY_ENOTFOUND) st = FERRY_OK;
  else if (!st && !(ps = old = ferry__v1__projection_state__unpack(NULL, vlen, (const uint8_t *)val)))
    st = ferry_error_set(err, FERRY_ECORRUPT, "projection checkpoint of %s does not decode", customer);
  free(val);
  if (st) return st;
  ps->restored = true;
  ferry_wbatch *b = ferry_wbatch_create(s, customer);
  if (!b) st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  if (!st) {
    ferry_key k;
    ferry_key_reset(&k);
    ferry_key_raw(&k, FERRY_META_PROJECTION, strlen(FERRY_META_PROJECTION));
    proj_put_pb(b, FERRY_CF_META, &k, &ps->base);
    st = ferry_wbatch_commit(b, false, err);
  }
  ferry_wbatch_destroy(b);
  if (old) ferry__v1__projection_state__free_unpacked(old, NULL);
  return st;
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

ferry_status ferry_backup(ferry_store *s, const char *dir, ferry_error *err) {
  ferry_status st = ferry_store_backup(s, dir, err);
  if (st) return st;
  ferry_store *copy = NULL;
  names ns = {0};
  st = ferry_store_open(&copy, dir, FERRY_STORE_WRITE, err);
  if (!st) st = ferry_store_customers(copy, add_name, &ns, err);
  if (!st && ns.oom) st = ferry_error_set(err, FERRY_ENOMEM, "out of memory");
  for (size_t i = 0; !st && i < ns.n; i++) st = mark(copy, ns.v[i], err);
  if (!st) st = ferry_store_sync_wal(copy, err);
  ferry_store_close(copy);
  for (size_t i = 0; i < ns.n; i++) free(ns.v[i]);
  free(ns.v);
  if (st) { /* an unmarked copy would be unsafe to restore: leave none */
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err->msg);
    nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    ferry_error_set(err, st, "cannot mark the backup %s as a backup (%s); it was removed", dir, msg);
  }
  return st;
}
