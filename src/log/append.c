/*
 * The append entry points: check a batch in the caller's thread (so callers
 * share that work rather than queue it behind the commit thread), hand it
 * to the committer, and wait for it (sync) or return (async).
 */
#include <stdlib.h>
#include <string.h>

#include "log/committer.h"
#include "log/event.h"

/* Every change needs an id that matches the one inside its packed Change. */
static ferry_status check_changes(const ferry_change_ref *changes, size_t n, ferry_error *err) {
  for (size_t i = 0; i < n; i++) {
    const ferry_change_ref *c = &changes[i];
    const uint8_t *id;
    size_t idlen;
    if (!c->id || c->id_len == 0 || c->id_len > FERRY_STORE_ID_MAX)
      return ferry_error_set(err, FERRY_EINVAL, "change %zu: id must be 1..%d bytes", i + 1,
                             FERRY_STORE_ID_MAX);
    if (!c->pb || c->pb_len == 0 || !event_change_id(c->pb, c->pb_len, &id, &idlen))
      return ferry_error_set(err, FERRY_EINVAL,
                             "change %zu (id %.*s): not a packed ferry.v1.Change", i + 1,
                             (int)c->id_len, c->id);
    if (idlen != c->id_len || memcmp(id, c->id, idlen) != 0)
      return ferry_error_set(err, FERRY_EINVAL,
                             "change %zu (id %.*s): the packed Change's id is '%.*s'", i + 1,
                             (int)c->id_len, c->id, (int)idlen, (const char *)id);
  }
  return FERRY_OK;
}

static ferry_status check_request(ferry_store *s, append_req *r, const char *customer,
                                  const ferry_change_ref *changes, size_t n, ferry_error *err) {
  if (!s || (n && !changes)) return ferry_error_set(err, FERRY_EINVAL, "append: invalid arguments");
  if (s->mode != FERRY_STORE_WRITE || !s->com)
    return ferry_error_set(err, FERRY_EINVAL, "cannot append: the store %s is open read-only",
                           s->dir);
  if (!key_prefix_make(&r->p, customer))
    return ferry_error_set(err, FERRY_EINVAL, "invalid customer id '%s'", customer ? customer : "");
  r->changes = changes;
  r->n = n;
  return check_changes(changes, n, err);
}

ferry_status ferry_store_append(ferry_store *s, const char *customer,
                                const ferry_change_ref *changes, size_t n, ferry_append_result *res,
                                ferry_error *err) {
  append_req r;
  pthread_cond_t cv;
  ferry_status st;

  memset(&r, 0, sizeof r);
  if (res) memset(res, 0, sizeof *res);
  if ((st = check_request(s, &r, customer, changes, n, err))) return st;
  if (pthread_cond_init(&cv, NULL) != 0)
    return ferry_error_set(err, FERRY_ENOMEM, "append: cannot create a condition variable");
  r.done_cv = &cv;
  if ((st = committer_run_or_enqueue(s->com, &r, err))) goto done;
  committer_wait(s->com, &r);
  st = r.st;
  if (res) *res = r.res;
  if (st && err) *err = r.err;
done:
  pthread_cond_destroy(&cv);
  return st;
}

/* A request that fails its checks is still queued, already failed, so that
 * cb delivers the detail (which change, why) like any other failure. */
ferry_status ferry_store_append_async(ferry_store *s, const char *customer,
                                      const ferry_change_ref *changes, size_t n, ferry_append_cb cb,
                                      void *arg) {
  ferry_status st;
  append_req *r = NULL;
  if (!s || !cb || s->mode != FERRY_STORE_WRITE || !s->com) return FERRY_EINVAL;
  if (!(r = calloc(1, sizeof *r))) return FERRY_ENOMEM;
  r->cb = cb;
  r->arg = arg;
  r->st = check_request(s, r, customer, changes, n, &r->err);
  if ((st = committer_enqueue(s->com, r, NULL))) goto done;
  r = NULL; /* the committer's now */
done:
  free(r);
  return st;
}
