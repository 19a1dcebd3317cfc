/*
 * Linking a compiled mapping: the entity order, the joins and tables the fold
 * needs, and the mapping's hash.
 *
 * DESIGN
 * Entities are put in topological order of their references (an entity after
 * every entity it refs) because that is the order the applier creates them
 * in: a record can only point at a record that has a cloud id. Among the
 * entities that are ready, the earliest in the file goes first, so the order
 * is stable and readable. n is a handful, so the quadratic Kahn loop is the
 * simplest correct choice. When the loop stalls every remaining entity has
 * a ref to another remaining one; following first refs from the earliest
 * remaining entity must revisit a node, and the part of the walk from that
 * node on is a cycle, which the error names ("a -> b -> a"). A self-reference
 * is a cycle of one. Entity indexes in expressions are renumbered to ranks.
 *
 * The hash covers the parsed file as canonical JSON (so comments, layout,
 * quoting and key order do not matter), the entity order (which is the
 * rank the store keys dirty entities by) and a version of the evaluation
 * rules, bumped whenever what a given mapping derives changes.
 */
#include <stdlib.h>
#include <string.h>

#include "projector/mapping_internal.h"

/* Bump when the same mapping would derive something different. */
#define EVAL_RULES_VERSION 1

/* ---- references between entities --------------------------------------------- */

static ferry_status add_ref(mapping_entity *e, size_t to) {
  size_t i = 0;
  while (i < e->nrefs && e->refs[i] < to)
    i++;
  if (i < e->nrefs && e->refs[i] == to) return FERRY_OK;
  size_t *r = mapping_realloc(e->refs, (e->nrefs + 1) * sizeof *r);
  if (!r) return FERRY_ENOMEM;
  memmove(r + i + 1, r + i, (e->nrefs - i) * sizeof *r);
  r[i] = to;
  e->refs = r;
  e->nrefs++;
  return FERRY_OK;
}

static ferry_status gather_refs(mapping_entity *e, const mapping_field *f, size_t n) {
  ferry_status st = FERRY_OK;
  for (size_t i = 0; i < n && !st; i++) {
    if (f[i].expr.kind == EX_REF) st = add_ref(e, f[i].expr.ref);
    if (f[i].expr.kind == EX_COLLECT) st = gather_refs(e, f[i].expr.fields, f[i].expr.nfields);
  }
  return st;
}

/* The line of the first ref to entity `to` among the fields. */
static size_t ref_line(const mapping_field *f, size_t n, size_t to) {
  for (size_t i = 0; i < n; i++) {
    if (f[i].expr.kind == EX_REF && f[i].expr.ref == to) return f[i].expr.line;
    if (f[i].expr.kind == EX_COLLECT) {
      size_t line = ref_line(f[i].expr.fields, f[i].expr.nfields, to);
      if (line) return line;
    }
  }
  return 0;
}

static void renumber(mapping_field *f, size_t n, const size_t *rank) {
  for (size_t i = 0; i < n; i++) {
    if (f[i].expr.kind == EX_REF) f[i].expr.ref = rank[f[i].expr.ref];
    if (f[i].expr.kind == EX_COLLECT) renumber(f[i].expr.fields, f[i].expr.nfields, rank);
  }
}

/* ---- order ------------------------------------------------------------------ */

static ferry_status cycle_error(const ferry_mapping *m, const unsigned char *done,
                                ferry_error *err) {
  ferry_status st = FERRY_ENOMEM;
  size_t *pos = mapping_malloc(m->n * sizeof *pos), *path = mapping_malloc(m->n * sizeof *path);
  size_t u = 0, len = 0;
  mbuf names;
  mbuf_init(&names, 4096);
  if (!pos || !path) goto done;
  for (size_t i = 0; i < m->n; i++)
    pos[i] = SIZE_MAX;
  while (done[u])
    u++;
  while (pos[u] == SIZE_MAX) {
    const mapping_entity *e = &m->entities[u];
    size_t next = 0;
    pos[u] = len;
    path[len++] = u;
    while (done[e->refs[next]])
      next++; /* a stalled entity has an undone ref */
    u = e->refs[next];
  }
  for (size_t k = pos[u]; k < len; k++) {
    if (mbuf_adds(&names, m->entities[path[k]].name) || mbuf_adds(&names, " -> ")) goto done;
  }
  if (mbuf_adds(&names, m->entities[u].name)) goto done;
  const mapping_entity *from = &m->entities[path[pos[u]]];
  size_t to = pos[u] + 1 < len ? path[pos[u] + 1] : u;
  st = ferry_error_set(err, FERRY_EMAPPING, "%s:%zu: entities.%s: reference cycle: %s", m->name,
                       ref_line(from->fields, from->nfields, to), from->name, names.p);
done:
  mbuf_free(&names);
  free(path);
  free(pos);
  return st;
}

static int size_cmp(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return x < y ? -1 : x > y;
}

/* Kahn's algorithm, earliest ready entity first; then renumbers. */
static ferry_status order_entities(ferry_mapping *m, ferry_error *err) {
  ferry_status st = FERRY_OK;
  unsigned char *done = mapping_calloc(m->n, 1);
  size_t *rank = mapping_malloc(m->n * sizeof *rank);
  mapping_entity *sorted = mapping_calloc(m->n, sizeof *sorted);
  if (!done || !rank || !sorted) {
    st = FERRY_ENOMEM;
    goto done;
  }
  for (size_t k = 0; k < m->n; k++) {
    size_t pick = 0;
    for (; pick < m->n; pick++) {
      const mapping_entity *e = &m->entities[pick];
      size_t r = 0;
      while (!done[pick] && r < e->nrefs && done[e->refs[r]])
        r++;
      if (!done[pick] && r == e->nrefs) break;
    }
    if (pick == m->n) {
      st = cycle_error(m, done, err);
      goto done;
    }
    done[pick] = 1;
    rank[pick] = k;
    sorted[k] = m->entities[pick];
  }
  for (size_t k = 0; k < m->n; k++) {
    mapping_entity *e = &sorted[k];
    for (size_t r = 0; r < e->nrefs; r++)
      e->refs[r] = rank[e->refs[r]];
    if (e->nrefs > 1) qsort(e->refs, e->nrefs, sizeof *e->refs, size_cmp);
    renumber(e->fields, e->nfields, rank);
  }
  free(m->entities);
  m->entities = sorted;
  sorted = NULL;
done:
  free(sorted);
  free(rank);
  free(done);
  return st;
}

/* ---- joins and tables ---------------------------------------------------------- */

static ferry_status add_join(ferry_mapping *m, ferry_mapping_join j, size_t *index) {
  for (size_t k = 0; k < m->njoins; k++) {
    const ferry_mapping_join *o = &m->joins[k];
    if (o->entity == j.entity && o->kind == j.kind && o->parent == j.parent &&
        strcmp(o->from, j.from) == 0 && strcmp(o->table, j.table) == 0 &&
        strcmp(o->column, j.column) == 0) {
      *index = k;
      return FERRY_OK;
    }
  }
  ferry_mapping_join *js = mapping_realloc(m->joins, (m->njoins + 1) * sizeof *js);
  if (!js) return FERRY_ENOMEM;
  m->joins = js;
  *index = m->njoins;
  js[m->njoins++] = j;
  return FERRY_OK;
}

static ferry_status gather_joins(ferry_mapping *m, size_t ent, const char *from,
                                 const mapping_field *f, size_t n, size_t parent) {
  ferry_status st = FERRY_OK;
  for (size_t i = 0; i < n && !st; i++) {
    const mapping_expr *e = &f[i].expr;
    size_t index;
    if (e->kind == EX_LOOKUP)
      st = add_join(m, (ferry_mapping_join){ent, FERRY_JOIN_LOOKUP, from, e->table, e->on, parent},
                    &index);
    if (e->kind == EX_COLLECT) {
      st = add_join(m, (ferry_mapping_join){ent, FERRY_JOIN_COLLECT, from, e->table, e->on, parent},
                    &index);
      if (!st) st = gather_joins(m, ent, e->table, e->fields, e->nfields, index);
    }
  }
  return st;
}

static int str_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static size_t count_tables(const mapping_field *f, size_t n) {
  size_t count = 0;
  for (size_t i = 0; i < n; i++) {
    if (f[i].expr.kind == EX_LOOKUP) count++;
    if (f[i].expr.kind == EX_COLLECT)
      count += 1 + count_tables(f[i].expr.fields, f[i].expr.nfields);
  }
  return count;
}

static void list_tables(const mapping_field *f, size_t n, const char **out, size_t *k) {
  for (size_t i = 0; i < n; i++) {
    if (f[i].expr.kind == EX_LOOKUP || f[i].expr.kind == EX_COLLECT) out[(*k)++] = f[i].expr.table;
    if (f[i].expr.kind == EX_COLLECT) list_tables(f[i].expr.fields, f[i].expr.nfields, out, k);
  }
}

static ferry_status gather_tables(ferry_mapping *m) {
  size_t total = 0, k = 0;
  for (size_t i = 0; i < m->n; i++)
    total += 1 + count_tables(m->entities[i].fields, m->entities[i].nfields);
  m->tables = mapping_calloc(total, sizeof *m->tables);
  if (!m->tables) return FERRY_ENOMEM;
  for (size_t i = 0; i < m->n; i++) {
    m->tables[k++] = m->entities[i].source;
    list_tables(m->entities[i].fields, m->entities[i].nfields, m->tables, &k);
  }
  qsort(m->tables, k, sizeof *m->tables, str_cmp);
  m->ntables = 0;
  for (size_t i = 0; i < k; i++)
    if (m->ntables == 0 || strcmp(m->tables[m->ntables - 1], m->tables[i]) != 0)
      m->tables[m->ntables++] = m->tables[i];
  return FERRY_OK;
}

/* ---- hash ---------------------------------------------------------------------- */

static ferry_status compute_hash(ferry_mapping *m, const ynode *root) {
  ferry_status st = FERRY_ENOMEM;
  json_t *doc = json_object(), *order = json_array();
  if (!doc || !order) goto done;
  for (size_t i = 0; i < m->n; i++)
    if (json_array_append_new(order, json_string(m->entities[i].name))) goto done;
  if (json_object_set_new(doc, "rules", json_integer(EVAL_RULES_VERSION)) ||
      json_object_set_new(doc, "mapping", mapping_yaml_json(root)) ||
      json_object_set(doc, "order", order))
    goto done;
  st = ferry_value_hash(doc, m->hash);
done:
  json_decref(order);
  json_decref(doc);
  return st;
}

ferry_status mapping_link(ferry_mapping *m, const ynode *root, ferry_error *err) {
  ferry_status st = FERRY_OK;
  for (size_t i = 0; i < m->n && !st; i++)
    st = gather_refs(&m->entities[i], m->entities[i].fields, m->entities[i].nfields);
  if (!st) st = order_entities(m, err);
  for (size_t i = 0; i < m->n && !st; i++)
    st = gather_joins(m, i, m->entities[i].source, m->entities[i].fields, m->entities[i].nfields,
                      FERRY_JOIN_NONE);
  if (!st) st = gather_tables(m);
  if (!st) st = compute_hash(m, root);
  return st;
}
