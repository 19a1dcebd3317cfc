/*
 * The evaluator (SPEC §2): a root row in, the entity's filter verdict, key
 * and payload out. Filters and templates read only the root row; lookups and
 * collects read other rows through the caller's ferry_row_source; refs become
 * {"$ref": "ENTITY/KEY"} markers, resolved later by the applier.
 *
 * Transforms, decided where the SPEC leaves room:
 *  - trim strips ASCII whitespace (space, \t, \n, \v, \f, \r) at both ends;
 *    lower/upper change ASCII letters only. Other bytes (all of UTF-8's
 *    multi-byte sequences) pass through intact, so the result stays valid
 *    UTF-8 and does not depend on a locale.
 *  - to_int: integers as they are; reals truncate toward zero; strings
 *    parse after trimming ASCII whitespace, in the decimal forms
 *    mapping_number_syntax accepts ("42", "-7", "4.7" -> 4, "1e3" -> 1000);
 *    no hex, inf or nan. Out of int64, booleans and other strings: null.
 *  - to_float: the same inputs as a real; a result that overflows is null.
 *  - to_string: rendered as in templates (strings unchanged).
 *  - digits: rendered as in templates, then only 0-9 kept ("-4.5" -> "45",
 *    true -> "").
 *  - A transform of null is null, including to_string and digits.
 *
 * Strings the evaluator builds keep the bytes they were built from (jansson's
 * _nocheck constructors): the row source vouches for its strings, and an
 * evaluator that rejected a bad byte would fail the whole entity for it.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "projector/mapping_internal.h"

typedef struct ectx {
  const ferry_mapping *m;
  const mapping_entity *entity;
  const ferry_row_source *src;
  ferry_error *err;
} ectx;

/* ---- templates and filters ------------------------------------------------------ */

static ferry_status render(const mapping_tmpl *t, const char *key, const json_t *row, mbuf *b) {
  ferry_status st = FERRY_OK;
  for (size_t i = 0; i < t->n && !st; i++) {
    const tseg *s = &t->segs[i];
    if (s->kind == TSEG_TEXT)
      st = mbuf_add(b, s->s, s->len);
    else if (s->kind == TSEG_KEY)
      st = mbuf_adds(b, key);
    else
      st = mapping_text_add(b, json_object_get(row, s->s));
  }
  return st;
}

static int filter_pass(const mapping_filter *f, const json_t *row) {
  const json_t *v = f->column ? json_object_get(row, f->column) : NULL; /* missing is null */
  size_t i;
  switch (f->kind) {
  case FL_EQUALS: return ferry_value_equal(v, f->value);
  case FL_NOT_EQUALS: return !ferry_value_equal(v, f->value);
  case FL_IS_NULL: return (v == NULL || json_is_null(v)) == f->is_null;
  case FL_IN:
    for (i = 0; i < json_array_size(f->value); i++)
      if (ferry_value_equal(v, json_array_get(f->value, i))) return 1;
    return 0;
  case FL_ALL:
    for (i = 0; i < f->nsubs; i++)
      if (!filter_pass(&f->subs[i], row)) return 0;
    return 1;
  case FL_ANY:
    for (i = 0; i < f->nsubs; i++)
      if (filter_pass(&f->subs[i], row)) return 1;
    return 0;
  case FL_NOT: return !filter_pass(&f->subs[0], row);
  }
  return 0;
}

/* ---- transforms ------------------------------------------------------------------ */

static int ascii_space(char c) {
  return c == ' ' || (c >= '\t' && c <= '\r');
}

/* A new string from s after op: trim, lower or upper. */
static json_t *string_op(mapping_transform op, const char *s, size_t n) {
  if (op == TR_TRIM) {
    while (n && ascii_space(*s))
      s++, n--;
    while (n && ascii_space(s[n - 1]))
      n--;
    return json_stringn_nocheck(s, n);
  }
  char *d = mapping_strndup(s, n);
  if (!d) return NULL;
  for (size_t i = 0; i < n; i++) {
    if (op == TR_LOWER && d[i] >= 'A' && d[i] <= 'Z') d[i] = (char)(d[i] + 32);
    if (op == TR_UPPER && d[i] >= 'a' && d[i] <= 'z') d[i] = (char)(d[i] - 32);
  }
  json_t *out = json_stringn_nocheck(d, n);
  free(d);
  return out;
}

#define TWO63 9223372036854775808.0

static json_t *real_to_int(double d) {
  double t = trunc(d);
  if (!(t >= -TWO63 && t < TWO63)) return json_null();
  return json_integer((json_int_t)t);
}

/* A numeric string as a number: to_int (want_int) or to_float. */
static json_t *parse_number(const char *s, size_t n, int want_int) {
  while (n && ascii_space(*s))
    s++, n--;
  while (n && ascii_space(s[n - 1]))
    n--;
  int kind = mapping_number_syntax(s, n);
  if (!kind) return json_null();
  char *copy = mapping_strndup(s, n); /* strtod needs a terminator */
  if (!copy) return NULL;
  json_t *out;
  errno = 0;
  if (kind == 1 && want_int) {
    long long i = strtoll(copy, NULL, 10);
    out = errno == ERANGE ? json_null() : json_integer(i);
  } else {
    double d = strtod(copy, NULL);
    if (!isfinite(d))
      out = json_null();
    else
      out = want_int ? real_to_int(d) : json_real(d);
  }
  free(copy);
  return out;
}

static json_t *to_number(const json_t *v, int want_int) {
  if (json_is_integer(v))
    return want_int ? json_integer(json_integer_value(v))
                    : json_real((double)json_integer_value(v));
  if (json_is_real(v))
    return want_int ? real_to_int(json_real_value(v)) : json_real(json_real_value(v));
  if (json_is_string(v)) return parse_number(json_string_value(v), json_string_length(v), want_int);
  return json_null(); /* booleans, arrays, objects: a failed conversion */
}

/* The value rendered as text; digits keeps only 0-9. */
static json_t *as_text(const json_t *v, int digits) {
  mbuf b;
  json_t *out = NULL;
  mbuf_init(&b, FERRY_TEXT_MAX);
  if (mapping_text_add(&b, v) == FERRY_OK) {
    size_t k = 0;
    for (size_t i = 0; digits && i < b.len; i++)
      if (b.p[i] >= '0' && b.p[i] <= '9') b.p[k++] = b.p[i];
    if (digits) b.len = k;
    out = json_stringn_nocheck(b.p ? b.p : "", b.len);
  }
  mbuf_free(&b);
  return out;
}

/* Replaces *v (owned) by op applied to it. */
static ferry_status transform(mapping_transform op, json_t **v) {
  json_t *in = *v, *out = NULL;
  if (json_is_null(in)) return FERRY_OK;
  switch (op) {
  case TR_TRIM:
  case TR_LOWER:
  case TR_UPPER:
    if (!json_is_string(in)) return FERRY_OK;
    out = string_op(op, json_string_value(in), json_string_length(in));
    break;
  case TR_TO_STRING:
    if (json_is_string(in)) return FERRY_OK;
    out = as_text(in, 0);
    break;
  case TR_TO_INT: out = to_number(in, 1); break;
  case TR_TO_FLOAT: out = to_number(in, 0); break;
  case TR_NULL_IF_EMPTY:
    if (!json_is_string(in) || json_string_length(in) != 0) return FERRY_OK;
    out = json_null();
    break;
  case TR_DIGITS: out = as_text(in, 1); break;
  }
  if (!out) return FERRY_ENOMEM; /* as_text can also mean too long; both stop the entity */
  json_decref(in);
  *v = out;
  return FERRY_OK;
}

/* ---- expressions ----------------------------------------------------------------- */

static ferry_status eval_expr(ectx *x, const mapping_expr *e, const char *key, const json_t *row,
                              json_t **out);

static ferry_status eval_template(const mapping_tmpl *t, const char *key, const json_t *row,
                                  json_t **out) {
  mbuf b;
  mbuf_init(&b, FERRY_TEXT_MAX);
  ferry_status st = render(t, key, row, &b);
  if (!st && !(*out = json_stringn_nocheck(b.p ? b.p : "", b.len))) st = FERRY_ENOMEM;
  mbuf_free(&b);
  return st;
}

static ferry_status need_source(ectx *x, int collect) {
  if (x->src && (collect ? x->src->each_row != NULL : x->src->get_row != NULL)) return FERRY_OK;
  return ferry_error_set(x->err, FERRY_EINVAL, "entity %s: a %s needs a row source",
                         x->entity->name, collect ? "collect" : "lookup");
}

static ferry_status eval_lookup(ectx *x, const mapping_expr *e, const json_t *row, json_t **out) {
  const json_t *on = json_object_get(row, e->on);
  json_t *found = NULL;
  mbuf b;
  ferry_status st = FERRY_OK;
  *out = json_null();
  if (!on || json_is_null(on)) return FERRY_OK;
  mbuf_init(&b, FERRY_TEXT_MAX);
  st = mapping_text_add(&b, on);
  if (!st && b.len && !memchr(b.p, '\0', b.len)) { /* no row has an empty key or a NUL in it */
    st = need_source(x, 0);
    if (!st) st = x->src->get_row(x->src->arg, e->table, b.p, &found, x->err);
  }
  if (!st && found) {
    json_t *v = json_object_get(found, e->column);
    if (v) *out = json_incref(v);
  }
  json_decref(found);
  mbuf_free(&b);
  return st;
}

static ferry_status eval_ref(ectx *x, const mapping_expr *e, const char *key, const json_t *row,
                             json_t **out) {
  mbuf b;
  mbuf_init(&b, FERRY_TEXT_MAX);
  ferry_status st = render(&e->tmpl, key, row, &b);
  /* a key with a NUL names no entity (derive refuses such keys): never resolves */
  if (!st && b.len && memchr(b.p, '\0', b.len))
    *out = json_null();
  else if (!st && !(*out = mapping_ref_new(x->m->entities[e->ref].name, b.p ? b.p : "", b.len)))
    st = FERRY_ENOMEM;
  mbuf_free(&b);
  return st;
}

/* ---- collect ------------------------------------------------------------------ */

typedef struct child {
  char *key;
  json_t *row; /* a reference, holding ord alive */
  const json_t *ord;
} child;

typedef struct gather {
  const mapping_expr *e;
  const char *parent;
  size_t parent_len;
  child *kids;
  size_t n, cap;
  mbuf scratch;
} gather;

/* Keeps a child the source reports, if its column really matches: the
 * SPEC's rule holds even if an index is stale. */
static ferry_status on_child(void *arg, const char *key, json_t *row) {
  gather *g = arg;
  g->scratch.len = 0;
  ferry_status st = mapping_text_add(&g->scratch, json_object_get(row, g->e->on));
  if (st || !json_is_object(row) || g->scratch.len != g->parent_len ||
      memcmp(g->scratch.p ? g->scratch.p : "", g->parent, g->parent_len) != 0)
    return st;
  if (g->n == g->cap) {
    size_t cap = g->cap ? g->cap * 2 : 8;
    child *k = mapping_realloc(g->kids, cap * sizeof *k);
    if (!k) return FERRY_ENOMEM;
    g->kids = k;
    g->cap = cap;
  }
  char *copy = mapping_strdup(key);
  if (!copy) return FERRY_ENOMEM;
  g->kids[g->n++] =
      (child){copy, json_incref(row), g->e->order_by ? json_object_get(row, g->e->order_by) : NULL};
  return FERRY_OK;
}

/* order_by value (missing is null; null < bool < number < string), then
 * the child key bytewise. Without order_by every ord is NULL: key order. */
static int child_cmp(const void *a, const void *b) {
  const child *x = a, *y = b;
  int c = ferry_value_compare(x->ord, y->ord);
  return c ? c : strcmp(x->key, y->key);
}

static ferry_status child_object(ectx *x, const mapping_expr *e, const child *k, json_t **out) {
  ferry_status st = FERRY_OK;
  json_t *obj = json_object();
  if (!obj) return FERRY_ENOMEM;
  for (size_t f = 0; f < e->nfields && !st; f++) {
    json_t *v = NULL;
    st = eval_expr(x, &e->fields[f].expr, k->key, k->row, &v);
    if (!st && json_object_set_new_nocheck(obj, e->fields[f].name, v)) st = FERRY_ENOMEM;
  }
  if (st)
    json_decref(obj);
  else
    *out = obj;
  return st;
}

static ferry_status eval_collect(ectx *x, const mapping_expr *e, const char *key, json_t **out) {
  gather g = {.e = e, .parent = key, .parent_len = strlen(key)};
  json_t *arr = json_array();
  ferry_status st = arr ? need_source(x, 1) : FERRY_ENOMEM;
  mbuf_init(&g.scratch, FERRY_TEXT_MAX);
  if (!st) st = x->src->each_row(x->src->arg, e->table, e->on, key, on_child, &g, x->err);
  if (!st && g.n > 1) qsort(g.kids, g.n, sizeof *g.kids, child_cmp);
  for (size_t i = 0; i < g.n && !st; i++) {
    json_t *obj = NULL;
    st = child_object(x, e, &g.kids[i], &obj);
    if (!st && json_array_append_new(arr, obj)) st = FERRY_ENOMEM;
  }
  for (size_t i = 0; i < g.n; i++) {
    free(g.kids[i].key);
    json_decref(g.kids[i].row);
  }
  free(g.kids);
  mbuf_free(&g.scratch);
  if (st)
    json_decref(arr);
  else
    *out = arr;
  return st;
}

static ferry_status eval_expr(ectx *x, const mapping_expr *e, const char *key, const json_t *row,
                              json_t **out) {
  json_t *v = NULL;
  ferry_status st = FERRY_OK;
  switch (e->kind) {
  case EX_COLUMN:
    v = json_object_get(row, e->column);
    v = v ? json_incref(v) : json_null();
    break;
  case EX_TEMPLATE: st = eval_template(&e->tmpl, key, row, &v); break;
  case EX_CONST: /* a copy: the mapping's value is never shared across threads */
    if (!(v = json_copy(e->konst))) st = FERRY_ENOMEM;
    break;
  case EX_LOOKUP: st = eval_lookup(x, e, row, &v); break;
  case EX_COLLECT: st = eval_collect(x, e, key, &v); break;
  case EX_REF: st = eval_ref(x, e, key, row, &v); break;
  }
  for (size_t t = 0; t < e->ntransforms && !st; t++)
    st = transform(e->transforms[t], &v);
  if (st) {
    json_decref(v);
    v = NULL;
  }
  *out = v;
  return st;
}

/* ---- what an entity reads of its root row ------------------------------------------ */

/* Whether column differs between the rows; any difference counts, even one
 * the evaluator would not tell apart (1 and 1.0, missing and null). */
static int column_differs(const char *column, const json_t *a, const json_t *b) {
  const json_t *x = json_object_get(a, column), *y = json_object_get(b, column);
  return (x == NULL) != (y == NULL) || (x && !json_equal(x, y));
}

static int tmpl_differs(const mapping_tmpl *t, const json_t *a, const json_t *b) {
  for (size_t i = 0; i < t->n; i++)
    if (t->segs[i].kind == TSEG_COLUMN && column_differs(t->segs[i].s, a, b)) return 1;
  return 0;
}

static int filter_differs(const mapping_filter *f, const json_t *a, const json_t *b) {
  if (f->column && column_differs(f->column, a, b)) return 1;
  for (size_t i = 0; i < f->nsubs; i++)
    if (filter_differs(&f->subs[i], a, b)) return 1;
  return 0;
}

/* A collect reads the root's key only: its fields read the child rows. */
static int expr_differs(const mapping_expr *e, const json_t *a, const json_t *b) {
  switch (e->kind) {
  case EX_COLUMN: return column_differs(e->column, a, b);
  case EX_TEMPLATE:
  case EX_REF: return tmpl_differs(&e->tmpl, a, b);
  case EX_LOOKUP: return column_differs(e->on, a, b);
  case EX_CONST:
  case EX_COLLECT: return 0;
  }
  return 1;
}

bool ferry_mapping_root_change_matters(const ferry_mapping *m, size_t i, const json_t *old_row,
                                       const json_t *new_row) {
  if (!m || i >= m->n || !json_is_object(old_row) || !json_is_object(new_row)) return true;
  const mapping_entity *en = &m->entities[i];
  if (tmpl_differs(&en->key, old_row, new_row)) return true;
  if (en->filter && filter_differs(en->filter, old_row, new_row)) return true;
  for (size_t f = 0; f < en->nfields; f++)
    if (expr_differs(&en->fields[f].expr, old_row, new_row)) return true;
  return false;
}

/* ---- deriving -------------------------------------------------------------------- */

static ferry_status derive_key(ectx *x, const char *root_key, const json_t *row, char **out) {
  mbuf b;
  mbuf_init(&b, FERRY_TEXT_MAX);
  ferry_status st = render(&x->entity->key, root_key, row, &b);
  if (!st && b.len && memchr(b.p, '\0', b.len))
    st = ferry_error_set(x->err, FERRY_EINVAL, "entity %s: the key of row %s has a NUL byte",
                         x->entity->name, root_key);
  if (!st && !(*out = mbuf_take(&b))) st = FERRY_ENOMEM;
  mbuf_free(&b);
  return st;
}

static ferry_status derive_payload(ectx *x, const char *root_key, const json_t *row, json_t **out) {
  ferry_status st = FERRY_OK;
  json_t *payload = json_object();
  if (!payload) return FERRY_ENOMEM;
  for (size_t f = 0; f < x->entity->nfields && !st; f++) {
    json_t *v = NULL;
    st = eval_expr(x, &x->entity->fields[f].expr, root_key, row, &v);
    if (!st && json_object_set_new_nocheck(payload, x->entity->fields[f].name, v))
      st = FERRY_ENOMEM;
  }
  if (st)
    json_decref(payload);
  else
    *out = payload;
  return st;
}

/* Both entry points: the filter, then whichever outputs are wanted. */
static ferry_status derive(const ferry_mapping *m, size_t i, const char *root_key,
                           const json_t *root_row, const ferry_row_source *src, int *passes,
                           char **entity_key, json_t **payload, ferry_error *err) {
  ectx x = {.m = m, .src = src, .err = err};
  char *key = NULL;
  json_t *obj = NULL;
  ferry_status st = FERRY_OK;
  if (entity_key) *entity_key = NULL;
  if (payload) *payload = NULL;
  if (!m || !passes || !root_key || !json_is_object(root_row) || i >= m->n)
    return ferry_error_set(err, FERRY_EINVAL, "derive: bad arguments");
  *passes = 0;
  x.entity = &m->entities[i];
  if (x.entity->filter && !filter_pass(x.entity->filter, root_row)) goto done;
  if (entity_key) st = derive_key(&x, root_key, root_row, &key);
  if (!st && payload) st = derive_payload(&x, root_key, root_row, &obj);
  if (st == FERRY_ENOMEM) ferry_error_set(err, st, "entity %s: out of memory", x.entity->name);
  if (st == FERRY_ETOOBIG)
    ferry_error_set(err, st, "entity %s, row %s: text longer than %u bytes", x.entity->name,
                    root_key, FERRY_TEXT_MAX);
  if (st) goto done;
  *passes = 1;
  if (entity_key) *entity_key = key;
  if (payload) *payload = obj;
  key = NULL;
  obj = NULL;
done:
  free(key);
  json_decref(obj);
  return st;
}

ferry_status ferry_mapping_derive(const ferry_mapping *m, size_t i, const char *root_key,
                                  const json_t *root_row, const ferry_row_source *src, int *passes,
                                  char **entity_key, json_t **payload, ferry_error *err) {
  return derive(m, i, root_key, root_row, src, passes, entity_key, payload, err);
}

ferry_status ferry_mapping_entity_key(const ferry_mapping *m, size_t i, const char *root_key,
                                      const json_t *root_row, int *passes, char **entity_key,
                                      ferry_error *err) {
  return derive(m, i, root_key, root_row, NULL, passes, entity_key, NULL, err);
}
