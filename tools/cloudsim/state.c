/* ferry-cloudsim whole-store views: /_dump and /_stats record counts, the idempotency table, and
 * the state file that lets a restarted simulator keep its records.
 *
 * The state file is one JSON object:
 *   {"format": "ferry-cloudsim-state/1",
 *    "collections": {path: {"next_id": N, "records": [record...]}},
 *    "idempotency": {"account\nkey": {"request": text, "status": N, "response": text}}}
 * next_id is kept so that ids are not handed out twice across a restart, and the idempotency table
 * so that a client retrying across the restart still gets its first answer back. The file is
 * written to a temporary name, fsynced and renamed over the old one, so a crash mid-save leaves
 * the previous state intact.
 */
#include "store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_FORMAT "ferry-cloudsim-state/1"

json_t *cs_store_dump(const cs_store *s) {
  json_t *out = json_object();
  json_t *arr = NULL;

  for (size_t i = 0; out && i < s->ncolls; i++) {
    const char *id;
    json_t *rec;
    arr = json_array();
    if (!arr) goto fail;
    json_object_foreach(s->colls[i]->records, id, rec) {
      if (json_array_append(arr, rec) != 0) goto fail;
    }
    if (json_object_set_new(out, s->colls[i]->path, arr) != 0) {
      arr = NULL; /* set_new consumed it */
      goto fail;
    }
    arr = NULL;
  }
  return out;
fail:
  json_decref(arr);
  json_decref(out);
  return NULL;
}

json_t *cs_store_counts(const cs_store *s, size_t *total) {
  json_t *out = json_object();

  *total = 0;
  for (size_t i = 0; out && i < s->ncolls; i++) {
    size_t n = json_object_size(s->colls[i]->records);
    *total += n;
    if (json_object_set_new(out, s->colls[i]->path, json_integer((json_int_t)n)) != 0) {
      json_decref(out);
      out = NULL;
    }
  }
  return out;
}

/* ---- idempotency ------------------------------------------------------------------------- */

cs_idem cs_store_idem_lookup(cs_store *s, const char *scope, const char *request, size_t req_len,
                             int *status, const char **body, size_t *body_len) {
  const json_t *e = json_object_get(s->idem, scope);
  const json_t *req, *resp;

  if (!e) return CS_IDEM_NEW;
  req = json_object_get(e, "request");
  if (json_string_length(req) != req_len || memcmp(json_string_value(req), request, req_len) != 0)
    return CS_IDEM_CONFLICT;
  resp = json_object_get(e, "response");
  *status = (int)json_integer_value(json_object_get(e, "status"));
  *body = json_string_value(resp);
  *body_len = json_string_length(resp);
  return CS_IDEM_REPLAY;
}

cs_status cs_store_idem_remember(cs_store *s, const char *scope, const char *request,
                                 size_t req_len, int status, const char *body, size_t body_len) {
  /* s% takes (pointer, length); NULL here also covers text that is not UTF-8. */
  json_t *e = json_pack("{s:s%,s:i,s:s%}", "request", request, req_len, "status", status,
                        "response", body, body_len);
  if (!e || json_object_set_new(s->idem, scope, e) != 0) return CS_ENOMEM;
  return CS_OK;
}

/* ---- state file ------------------------------------------------------------------------- */

/* Adds one collection of the state file to the store. */
static cs_status load_collection(cs_store *s, const char *path, const json_t *spec) {
  cs_status st = CS_EBADSTATE;
  const json_t *records = json_object_get(spec, "records");
  const json_t *next = json_object_get(spec, "next_id");
  cs_collection *c;
  size_t i;
  json_t *rec;

  if (!json_is_array(records) || (next && !json_is_integer(next))) goto done;
  st = CS_ENOMEM;
  if (!(c = cs_store_obtain(s, path))) goto done;
  if (next && json_integer_value(next) > c->next_id) c->next_id = json_integer_value(next);
  json_array_foreach(records, i, rec) {
    st = cs_collection_put_loaded(s, c, json_incref(rec));
    if (st != CS_OK) goto done;
  }
  st = CS_OK;
done:
  return st;
}

/* Whether every idempotency entry has the shape cs_store_idem_remember gives it; a replay hands
 * the stored status straight to the client, so it must be a real one. */
static int idem_ok(json_t *idem) {
  const char *scope;
  json_t *e;

  json_object_foreach(idem, scope, e) {
    json_int_t status = json_integer_value(json_object_get(e, "status"));
    if (!json_is_string(json_object_get(e, "request")) ||
        !json_is_string(json_object_get(e, "response")) || status < 100 || status > 599)
      return 0;
  }
  return 1;
}

static cs_status load_root(cs_store *s, const json_t *root, char *err, size_t errlen) {
  cs_status st = CS_EBADSTATE;
  const json_t *colls = json_object_get(root, "collections");
  json_t *idem = json_object_get(root, "idempotency");
  const char *path;
  json_t *spec;

  if (!json_is_string(json_object_get(root, "format")) ||
      strcmp(json_string_value(json_object_get(root, "format")), STATE_FORMAT) != 0 ||
      !json_is_object(colls) || (idem && (!json_is_object(idem) || !idem_ok(idem)))) {
    snprintf(err, errlen, "not a %s file", STATE_FORMAT);
    goto done;
  }
  json_object_foreach((json_t *)colls, path, spec) {
    st = load_collection(s, path, spec);
    if (st != CS_OK) {
      snprintf(err, errlen, "collection %s: %s", path,
               st == CS_ENOMEM ? "out of memory" : "bad records (each needs its id field)");
      goto done;
    }
  }
  st = CS_OK;
  if (idem && json_object_update(s->idem, idem) != 0) {
    snprintf(err, errlen, "out of memory");
    st = CS_ENOMEM;
  }
done:
  return st;
}

cs_status cs_store_load(cs_store *s, const char *path, char *err, size_t errlen) {
  cs_status st = CS_OK;
  json_error_t jerr;
  json_t *root = NULL;
  struct stat sb;

  /* A first run has no state yet; that is not an error. */
  if (stat(path, &sb) != 0 && errno == ENOENT) goto done;
  root = json_load_file(path, 0, &jerr);
  if (!root) {
    snprintf(err, errlen, "line %d: %s", jerr.line, jerr.text);
    st = CS_EBADSTATE;
    goto done;
  }
  st = load_root(s, root, err, errlen);
  if (st != CS_OK) cs_store_reset(s);
done:
  json_decref(root);
  return st;
}

/* The state as one new JSON value; it shares the records with the store. */
static json_t *state_json(const cs_store *s) {
  json_t *colls = json_object();
  json_t *root = json_pack("{s:s,s:o,s:O}", "format", STATE_FORMAT, "collections", colls,
                           "idempotency", s->idem);

  for (size_t i = 0; root && i < s->ncolls; i++) {
    const cs_collection *c = s->colls[i];
    json_t *records = json_array();
    const char *id;
    json_t *rec;
    json_object_foreach(c->records, id, rec) {
      if (records && json_array_append(records, rec) != 0) {
        json_decref(records);
        records = NULL;
      }
    }
    json_t *spec = json_pack("{s:I,s:o}", "next_id", c->next_id, "records", records);
    if (!spec || json_object_set_new(colls, c->path, spec) != 0) {
      json_decref(root);
      root = NULL;
    }
  }
  return root;
}

cs_status cs_store_save(const cs_store *s, const char *path, char *err, size_t errlen) {
  cs_status st = CS_ENOMEM;
  json_t *root = state_json(s);
  char *tmp = NULL;
  FILE *fp = NULL;
  size_t len = strlen(path) + 32;

  if (!root || !(tmp = malloc(len))) {
    snprintf(err, errlen, "out of memory");
    goto done;
  }
  snprintf(tmp, len, "%s.tmp.%ld", path, (long)getpid());
  st = CS_EIO;
  if (!(fp = fopen(tmp, "w"))) goto io_error;
  if (json_dumpf(root, fp, JSON_COMPACT) != 0 || fputc('\n', fp) == EOF || fflush(fp) != 0 ||
      fsync(fileno(fp)) != 0)
    goto io_error;
  if (fclose(fp) != 0) {
    fp = NULL;
    goto io_error;
  }
  fp = NULL;
  if (rename(tmp, path) != 0) goto io_error;
  st = CS_OK;
  goto done;
io_error:
  snprintf(err, errlen, "%s: %s", errno ? strerror(errno) : "write failed", tmp);
  if (fp) fclose(fp);
  unlink(tmp);
done:
  free(tmp);
  json_decref(root);
  return st;
}
