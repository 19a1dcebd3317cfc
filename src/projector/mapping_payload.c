/*
 * Reference markers in payloads. The evaluator cannot know the cloud id of a
 * referenced entity (it exists only once the applier has created it), so a
 * `ref` field becomes {"$ref": "ENTITY/KEY"}; these functions build markers,
 * recognise them, list them (the applier orders creates by them) and swap
 * them for cloud ids (the applier does so just before it sends a payload).
 * Entity names never contain '/', so the first '/' splits entity from key.
 */
#include <string.h>

#include "projector/mapping_internal.h"

json_t *mapping_ref_new(const char *entity, const char *key, size_t keylen) {
  json_t *out = NULL, *s = NULL;
  mbuf b;
  mbuf_init(&b, FERRY_TEXT_MAX);
  if (mbuf_adds(&b, entity) || mbuf_addc(&b, '/') || mbuf_add(&b, key, keylen)) goto done;
  /* the key's bytes come from rows and templates; keep them as they are */
  s = json_stringn_nocheck(b.p, b.len);
  if (!s) goto done;
  out = json_object();
  if (!out) goto done;
  if (json_object_set_new_nocheck(out, "$ref", s) != 0) {
    json_decref(out);
    out = NULL;
  }
  s = NULL; /* set_new took it, even on failure */
done:
  json_decref(s);
  mbuf_free(&b);
  return out;
}

json_t *ferry_payload_ref_new(const char *entity, const char *key) {
  return mapping_ref_new(entity, key, strlen(key));
}

int ferry_payload_ref_target(const json_t *v, const char **target) {
  if (!json_is_object(v) || json_object_size(v) != 1) return 0;
  json_t *s = json_object_get(v, "$ref");
  if (!json_is_string(s)) return 0;
  const char *t = json_string_value(s);
  size_t n = json_string_length(s);
  const char *slash = memchr(t, '/', n);
  if (!slash || strlen(t) != n || !mapping_entity_name_valid(t, (size_t)(slash - t))) return 0;
  if (target) *target = t;
  return 1;
}

/* Splits a marker's target into a NUL-terminated entity name (in ent) and
 * the key (a pointer into target). */
static const char *split_target(const char *target, char ent[FERRY_ENTITY_NAME_MAX + 1]) {
  const char *slash = strchr(target, '/');
  memcpy(ent, target, (size_t)(slash - target));
  ent[slash - target] = '\0';
  return slash + 1;
}

static ferry_status refs_walk(const json_t *v, ferry_ref_fn fn, void *arg, int depth) {
  const char *target;
  char ent[FERRY_ENTITY_NAME_MAX + 1];
  ferry_status st = FERRY_OK;
  if (depth > 2048) return FERRY_ETOOBIG;
  if (ferry_payload_ref_target(v, &target)) {
    const char *key = split_target(target, ent);
    return fn(arg, ent, key);
  }
  if (json_is_array(v)) {
    for (size_t i = 0; i < json_array_size(v) && st == FERRY_OK; i++)
      st = refs_walk(json_array_get(v, i), fn, arg, depth + 1);
  } else if (json_is_object(v)) {
    for (void *it = json_object_iter((json_t *)v); it && st == FERRY_OK;
         it = json_object_iter_next((json_t *)v, it))
      st = refs_walk(json_object_iter_value(it), fn, arg, depth + 1);
  }
  return st;
}

ferry_status ferry_payload_refs(const json_t *payload, ferry_ref_fn fn, void *arg) {
  return refs_walk(payload, fn, arg, 0);
}

static ferry_status resolve(const json_t *v, ferry_ref_resolver fn, void *arg, json_t **out,
                            int depth);

static ferry_status resolve_container(const json_t *v, ferry_ref_resolver fn, void *arg,
                                      json_t **out, int depth) {
  ferry_status st = FERRY_OK;
  json_t *c = json_is_array(v) ? json_array() : json_object();
  if (!c) return FERRY_ENOMEM;
  if (json_is_array(v)) {
    for (size_t i = 0; i < json_array_size(v) && st == FERRY_OK; i++) {
      json_t *item = NULL;
      st = resolve(json_array_get(v, i), fn, arg, &item, depth + 1);
      if (st == FERRY_OK && json_array_append_new(c, item) != 0) st = FERRY_ENOMEM;
    }
  } else {
    for (void *it = json_object_iter((json_t *)v); it && st == FERRY_OK;
         it = json_object_iter_next((json_t *)v, it)) {
      json_t *item = NULL;
      st = resolve(json_object_iter_value(it), fn, arg, &item, depth + 1);
      if (st == FERRY_OK && json_object_setn_new(c, json_object_iter_key(it),
                                                 json_object_iter_key_len(it), item) != 0)
        st = FERRY_ENOMEM;
    }
  }
  if (st != FERRY_OK) {
    json_decref(c);
    c = NULL;
  }
  *out = c;
  return st;
}

static ferry_status resolve(const json_t *v, ferry_ref_resolver fn, void *arg, json_t **out,
                            int depth) {
  const char *target;
  char ent[FERRY_ENTITY_NAME_MAX + 1];
  *out = NULL;
  if (depth > 2048) return FERRY_ETOOBIG;
  if (ferry_payload_ref_target(v, &target)) {
    json_t *id = NULL;
    const char *key = split_target(target, ent);
    ferry_status st = fn(arg, ent, key, &id);
    if (st != FERRY_OK) {
      json_decref(id);
      return st;
    }
    *out = id ? id : json_null();
    return FERRY_OK;
  }
  if (json_is_array(v) || json_is_object(v)) return resolve_container(v, fn, arg, out, depth);
  /* scalars are immutable in practice: share them */
  *out = json_incref((json_t *)v);
  return FERRY_OK;
}

ferry_status ferry_payload_resolve(const json_t *payload, ferry_ref_resolver fn, void *arg,
                                   json_t **out) {
  return resolve(payload, fn, arg, out, 0);
}
