/*
 * Loading a mapping (SPEC §2): read the file, parse the YAML
 * (mapping_yaml.c), compile the top level, the entities and their filters
 * here and their fields in mapping_fields.c, then order and link them
 * (mapping_link.c). Every problem is reported with the file, the line and
 * the path of the offending key, and stops the load: a mapping is used whole
 * or not at all. Also the mapping's accessors and its free.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "projector/mapping_internal.h"

/* ---- the loader's helpers ---------------------------------------------------- */

ferry_status mapping_bad(lctx *c, size_t line, const char *fmt, ...) {
  char msg[700];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (c->plen)
    return ferry_error_set(c->err, FERRY_EMAPPING, "%s:%zu: %s: %s", c->name, line, c->path, msg);
  return ferry_error_set(c->err, FERRY_EMAPPING, "%s:%zu: %s", c->name, line, msg);
}

size_t mapping_push(lctx *c, const char *seg) {
  size_t mark = c->plen;
  int n = snprintf(c->path + c->plen, sizeof c->path - c->plen, "%s%s", c->plen ? "." : "", seg);
  if (n > 0)
    c->plen += (size_t)n < sizeof c->path - c->plen ? (size_t)n : sizeof c->path - c->plen - 1;
  return mark;
}

size_t mapping_push_index(lctx *c, size_t i) {
  size_t mark = c->plen;
  int n = snprintf(c->path + c->plen, sizeof c->path - c->plen, "[%zu]", i);
  if (n > 0)
    c->plen += (size_t)n < sizeof c->path - c->plen ? (size_t)n : sizeof c->path - c->plen - 1;
  return mark;
}

void mapping_pop(lctx *c, size_t mark) {
  c->plen = mark;
  c->path[mark] = '\0';
}

const char *mapping_kind(const ynode *n) {
  if (n->kind == YNODE_MAP) return "a mapping";
  if (n->kind == YNODE_SEQ) return "a list";
  switch (n->type) {
  case YS_NULL: return "null";
  case YS_BOOL: return "a boolean";
  case YS_INT: return "an integer";
  case YS_REAL:
  case YS_NONFINITE: return "a number";
  case YS_STRING: return "a string";
  }
  return "a value";
}

const ynode *mapping_key_node(const ynode *map, const char *key) {
  for (size_t i = 0; i + 1 < map->nkids; i += 2)
    if (strcmp(map->kids[i]->text, key) == 0) return map->kids[i];
  return NULL;
}

ferry_status mapping_keys(lctx *c, const ynode *map, const char *const *allowed, const char *what) {
  for (size_t i = 0; i + 1 < map->nkids; i += 2) {
    const ynode *k = map->kids[i];
    size_t a = 0;
    while (allowed[a] && strcmp(allowed[a], k->text) != 0)
      a++;
    if (allowed[a]) continue;
    char list[200] = "";
    for (a = 0; allowed[a]; a++) {
      strncat(list, a ? ", " : "", sizeof list - strlen(list) - 1);
      strncat(list, allowed[a], sizeof list - strlen(list) - 1);
    }
    return mapping_bad(c, k->line, "unknown key '%.100s' (%s takes %s)", k->text, what, list);
  }
  return FERRY_OK;
}

ferry_status mapping_string(lctx *c, const ynode *n, const char *what, char **out) {
  if (n->kind != YNODE_SCALAR || n->type != YS_STRING)
    return mapping_bad(c, n->line, "expected %s, got %s", what, mapping_kind(n));
  if (n->len == 0) return mapping_bad(c, n->line, "expected %s, got an empty string", what);
  *out = mapping_strndup(n->text, n->len);
  return *out ? FERRY_OK : FERRY_ENOMEM;
}

ferry_status mapping_table(lctx *c, const ynode *n, char **out) {
  ferry_status st = mapping_string(c, n, "a table name", out);
  if (st) return st;
  size_t ok = strspn(n->text, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.");
  if (ok != n->len || n->len > 128)
    return mapping_bad(c, n->line, "'%.140s' is not a table name (1-128 of A-Z a-z 0-9 _ .)",
                       n->text);
  return FERRY_OK;
}

ferry_status mapping_column(lctx *c, const ynode *n, char **out) {
  ferry_status st = mapping_string(c, n, "a column name", out);
  if (st) return st;
  size_t chars = 0;
  for (size_t i = 0; i < n->len; i++)
    chars += ((unsigned char)n->text[i] & 0xC0) != 0x80;
  if (chars > 128) return mapping_bad(c, n->line, "column name longer than 128 characters");
  return FERRY_OK;
}

/* ---- filters ----------------------------------------------------------------- */

static void filter_clear(mapping_filter *f) {
  if (!f) return;
  free(f->column);
  json_decref(f->value);
  for (size_t i = 0; i < f->nsubs; i++)
    filter_clear(&f->subs[i]);
  free(f->subs);
}

/* A value a column is compared with: a scalar JSON has. */
static ferry_status check_value(lctx *c, const ynode *v) {
  if (v->kind != YNODE_SCALAR)
    return mapping_bad(c, v->line, "expected a scalar to compare with, got %s", mapping_kind(v));
  if (v->type == YS_NONFINITE)
    return mapping_bad(c, v->line, "%.40s is not a JSON number", v->text);
  return FERRY_OK;
}

static ferry_status compile_filter(lctx *c, const ynode *n, mapping_filter *f);

/* all: [..], any: [..], not: {..} */
static ferry_status compile_group(lctx *c, const ynode *n, mapping_filter *f, const char *op) {
  const char *const keys[] = {op, NULL};
  const ynode *v = mapping_yaml_get(n, op);
  char what[32];
  snprintf(what, sizeof what, "a%s %s filter", op[0] == 'n' ? "" : "n", op);
  ferry_status st = mapping_keys(c, n, keys, what);
  f->kind = op[0] == 'n' ? FL_NOT : op[1] == 'l' ? FL_ALL : FL_ANY;
  if (st) return st;
  size_t mark = mapping_push(c, op);
  if (f->kind != FL_NOT && v->kind != YNODE_SEQ)
    return mapping_bad(c, v->line, "expected a list of filters, got %s", mapping_kind(v));
  size_t count = f->kind == FL_NOT ? 1 : v->nkids;
  f->subs = mapping_calloc(count, sizeof *f->subs);
  if (!f->subs) return FERRY_ENOMEM;
  f->nsubs = count;
  for (size_t i = 0; i < count && !st; i++) {
    size_t im = f->kind == FL_NOT ? c->plen : mapping_push_index(c, i);
    st = compile_filter(c, f->kind == FL_NOT ? v : v->kids[i], &f->subs[i]);
    if (!st) mapping_pop(c, im);
  }
  if (!st) mapping_pop(c, mark);
  return st;
}

static ferry_status compile_test(lctx *c, const ynode *n, mapping_filter *f) {
  static const char *const keys[] = {"column", "equals", "not_equals", "is_null", "in", NULL};
  static const char *const ops[] = {"equals", "not_equals", "is_null", "in"};
  ferry_status st = mapping_keys(c, n, keys, "a column filter");
  const ynode *v = NULL;
  int which = -1;
  for (int i = 0; i < 4 && !st; i++) {
    if (!mapping_yaml_get(n, ops[i])) continue;
    if (v) return mapping_bad(c, n->line, "a filter takes one of equals, not_equals, is_null, in");
    v = mapping_yaml_get(n, ops[i]);
    which = i;
  }
  if (!st && !v)
    return mapping_bad(c, n->line, "a filter on a column needs equals, not_equals, is_null or in");
  if (!st) st = mapping_column(c, mapping_yaml_get(n, "column"), &f->column);
  if (st) return st;
  size_t mark = mapping_push(c, ops[which]);
  f->kind = (filter_kind[]){FL_EQUALS, FL_NOT_EQUALS, FL_IS_NULL, FL_IN}[which];
  if (f->kind == FL_IS_NULL) {
    if (v->kind != YNODE_SCALAR || v->type != YS_BOOL)
      return mapping_bad(c, v->line, "expected true or false, got %s", mapping_kind(v));
    f->is_null = v->boolean;
  } else if (f->kind == FL_IN) {
    if (v->kind != YNODE_SEQ)
      return mapping_bad(c, v->line, "expected a list, got %s", mapping_kind(v));
    for (size_t i = 0; i < v->nkids && !st; i++)
      st = check_value(c, v->kids[i]);
  } else {
    st = check_value(c, v);
  }
  if (!st && f->kind != FL_IS_NULL && !(f->value = mapping_yaml_json(v))) st = FERRY_ENOMEM;
  if (!st) mapping_pop(c, mark);
  return st;
}

static ferry_status compile_filter(lctx *c, const ynode *n, mapping_filter *f) {
  static const char *const groups[] = {"all", "any", "not"};
  if (n->kind != YNODE_MAP)
    return mapping_bad(c, n->line, "expected a filter mapping, got %s", mapping_kind(n));
  for (int i = 0; i < 3; i++)
    if (mapping_yaml_get(n, groups[i])) return compile_group(c, n, f, groups[i]);
  if (mapping_yaml_get(n, "column")) return compile_test(c, n, f);
  return mapping_bad(c, n->line, "a filter needs column, all, any or not");
}

/* ---- entities and the top level ---------------------------------------------- */

static void entity_clear(mapping_entity *e) {
  free(e->name);
  free(e->endpoint);
  free(e->source);
  mapping_tmpl_clear(&e->key);
  filter_clear(e->filter);
  free(e->filter);
  mapping_fields_free(e->fields, e->nfields);
  free(e->refs);
}

static ferry_status required(lctx *c, const ynode *key, const ynode *n, const char *name,
                             const ynode **out) {
  *out = mapping_yaml_get(n, name);
  return *out ? FERRY_OK : mapping_bad(c, key->line, "missing %s", name);
}

static ferry_status compile_entity_parts(lctx *c, const ynode *key, const ynode *n,
                                         mapping_entity *e) {
  const ynode *v;
  size_t mark;
  ferry_status st = required(c, key, n, "endpoint", &v);
  if (!st) st = mapping_string(c, v, "an endpoint path", &e->endpoint);
  if (!st && e->endpoint[0] != '/')
    st = mapping_bad(c, v->line, "endpoint '%.200s' must start with '/'", e->endpoint);
  if (!st) st = required(c, key, n, "source", &v);
  if (!st) st = mapping_table(c, v, &e->source);
  if (!st && (v = mapping_yaml_get(n, "key"))) {
    mark = mapping_push(c, "key");
    st = mapping_tmpl_compile(c, v, &e->key);
    if (!st) mapping_pop(c, mark);
  } else if (!st) {
    st = mapping_tmpl_default(&e->key);
  }
  if (!st && (v = mapping_yaml_get(n, "filter"))) {
    mark = mapping_push(c, "filter");
    e->filter = mapping_calloc(1, sizeof *e->filter);
    st = e->filter ? compile_filter(c, v, e->filter) : FERRY_ENOMEM;
    if (!st) mapping_pop(c, mark);
  }
  if (!st) st = required(c, key, n, "fields", &v);
  if (!st) {
    mark = mapping_push(c, "fields");
    st = mapping_fields_compile(c, v, &e->fields, &e->nfields, 0);
    if (!st) mapping_pop(c, mark);
  }
  return st;
}

static ferry_status compile_entity(lctx *c, const ynode *key, const ynode *n, mapping_entity *e) {
  static const char *const keys[] = {"endpoint", "source", "key", "filter", "fields", NULL};
  e->line = key->line;
  if (!mapping_entity_name_valid(key->text, key->len))
    return mapping_bad(c, key->line, "'%.140s' is not an entity name (1-128 of A-Z a-z 0-9 _ . -)",
                       key->text);
  e->name = mapping_strndup(key->text, key->len);
  if (!e->name) return FERRY_ENOMEM;
  if (n->kind != YNODE_MAP)
    return mapping_bad(c, n->line, "expected an entity mapping, got %s", mapping_kind(n));
  ferry_status st = mapping_keys(c, n, keys, "an entity");
  return st ? st : compile_entity_parts(c, key, n, e);
}

static ferry_status compile_top(lctx *c, const ynode *root, ferry_mapping *m) {
  static const char *const keys[] = {"version", "entities", NULL};
  if (root->kind != YNODE_MAP)
    return mapping_bad(c, root->line, "expected a mapping with version and entities, got %s",
                       mapping_kind(root));
  ferry_status st = mapping_keys(c, root, keys, "the top level");
  const ynode *v = mapping_yaml_get(root, "version"), *ents = mapping_yaml_get(root, "entities");
  if (st) return st;
  if (!v) return mapping_bad(c, root->line, "missing version");
  if (v->kind != YNODE_SCALAR || v->type != YS_INT || v->integer != 1)
    return mapping_bad(c, v->line, "version: unsupported version '%.40s' (expected 1)",
                       v->kind == YNODE_SCALAR ? v->text : mapping_kind(v));
  if (!ents) return mapping_bad(c, root->line, "missing entities");
  mapping_push(c, "entities");
  if (ents->kind != YNODE_MAP)
    return mapping_bad(c, ents->line, "expected a mapping of entities, got %s", mapping_kind(ents));
  if (ents->nkids == 0) return mapping_bad(c, ents->line, "no entities");
  if (ents->nkids / 2 > FERRY_MAPPING_MAX_ENTITIES)
    return mapping_bad(c, ents->line, "more than %d entities", FERRY_MAPPING_MAX_ENTITIES);
  c->entities = ents;
  m->n = ents->nkids / 2;
  m->entities = mapping_calloc(m->n, sizeof *m->entities);
  if (!m->entities) {
    m->n = 0;
    return FERRY_ENOMEM;
  }
  for (size_t i = 0; i < m->n && !st; i++) {
    size_t mark = mapping_push(c, ents->kids[2 * i]->text);
    st = compile_entity(c, ents->kids[2 * i], ents->kids[2 * i + 1], &m->entities[i]);
    if (!st) mapping_pop(c, mark);
  }
  return st;
}

/* ---- load and free --------------------------------------------------------- */

void ferry_mapping_free(ferry_mapping *m) {
  if (!m) return;
  for (size_t i = 0; m->entities && i < m->n; i++)
    entity_clear(&m->entities[i]);
  free(m->entities);
  free(m->joins);
  free(m->tables);
  free(m->name);
  free(m);
}

ferry_status ferry_mapping_load_buffer(ferry_mapping **out, const char *name, const char *buf,
                                       size_t len, ferry_error *err) {
  ferry_status st = FERRY_OK;
  ynode *root = NULL;
  lctx c = {.name = name ? name : "mapping", .err = err};
  ferry_mapping *m = NULL;
  *out = NULL;
  if (len > FERRY_MAPPING_MAX_BYTES) {
    st = ferry_error_set(err, FERRY_ETOOBIG, "%s: larger than %u bytes", c.name,
                         FERRY_MAPPING_MAX_BYTES);
    goto done;
  }
  st = mapping_yaml_parse(c.name, buf ? buf : "", len, &root, err);
  if (st) goto done;
  m = mapping_calloc(1, sizeof *m);
  if (!m || !(m->name = mapping_strdup(c.name))) st = FERRY_ENOMEM;
  if (!st) st = compile_top(&c, root, m);
  if (!st) st = mapping_link(m, root, err);
  if (st == FERRY_ENOMEM) ferry_error_set(err, FERRY_ENOMEM, "%s: out of memory", c.name);
done:
  mapping_yaml_free(root);
  if (st)
    ferry_mapping_free(m);
  else
    *out = m;
  return st;
}

ferry_status ferry_mapping_load(ferry_mapping **out, const char *path, ferry_error *err) {
  ferry_status st = FERRY_OK;
  char *buf = NULL;
  size_t len = 0;
  struct stat sb;
  FILE *f = fopen(path, "rb");
  *out = NULL;
  if (!f) return ferry_error_set(err, FERRY_EIO, "%s: cannot open: %s", path, strerror(errno));
  if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
    st = ferry_error_set(err, FERRY_EIO, "%s: not a regular file", path);
    goto done;
  }
  if ((uint64_t)sb.st_size > FERRY_MAPPING_MAX_BYTES) {
    st = ferry_error_set(err, FERRY_ETOOBIG, "%s: larger than %u bytes", path,
                         FERRY_MAPPING_MAX_BYTES);
    goto done;
  }
  buf = mapping_malloc((size_t)sb.st_size + 1);
  if (!buf) {
    st = ferry_error_set(err, FERRY_ENOMEM, "%s: out of memory", path);
    goto done;
  }
  len = fread(buf, 1, (size_t)sb.st_size, f);
  if (ferror(f)) {
    st = ferry_error_set(err, FERRY_EIO, "%s: read failed: %s", path, strerror(errno));
    goto done;
  }
  st = ferry_mapping_load_buffer(out, path, buf, len, err);
done:
  free(buf);
  fclose(f);
  return st;
}

/* ---- accessors ---------------------------------------------------------------- */

const char *ferry_mapping_name(const ferry_mapping *m) {
  return m->name;
}
const char *ferry_mapping_hash(const ferry_mapping *m) {
  return m->hash;
}
size_t ferry_mapping_entity_count(const ferry_mapping *m) {
  return m->n;
}

size_t ferry_mapping_entity_field_line(const ferry_mapping *m, size_t i, const char *name) {
  if (i >= m->n) return 0;
  const mapping_entity *e = &m->entities[i];
  for (size_t f = 0; f < e->nfields; f++)
    if (strcmp(e->fields[f].name, name) == 0) return e->fields[f].expr.line ? e->fields[f].expr.line : e->line;
  return 0;
}

const char *ferry_mapping_entity_name(const ferry_mapping *m, size_t i) {
  return i < m->n ? m->entities[i].name : NULL;
}

const char *ferry_mapping_entity_endpoint(const ferry_mapping *m, size_t i) {
  return i < m->n ? m->entities[i].endpoint : NULL;
}

const char *ferry_mapping_entity_source(const ferry_mapping *m, size_t i) {
  return i < m->n ? m->entities[i].source : NULL;
}

bool ferry_mapping_entity_key_is_root(const ferry_mapping *m, size_t i) {
  if (i >= m->n) return false;
  const mapping_tmpl *k = &m->entities[i].key;
  return k->n == 1 && k->segs[0].kind == TSEG_KEY;
}

size_t ferry_mapping_entity_find(const ferry_mapping *m, const char *name) {
  for (size_t i = 0; i < m->n; i++)
    if (strcmp(m->entities[i].name, name) == 0) return i;
  return SIZE_MAX;
}

const size_t *ferry_mapping_entity_refs(const ferry_mapping *m, size_t i, size_t *n) {
  *n = i < m->n ? m->entities[i].nrefs : 0;
  return i < m->n ? m->entities[i].refs : NULL;
}

size_t ferry_mapping_joins(const ferry_mapping *m, const ferry_mapping_join **out) {
  *out = m->joins;
  return m->njoins;
}

const char *const *ferry_mapping_tables(const ferry_mapping *m, size_t *n) {
  *n = m->ntables;
  return m->tables;
}
