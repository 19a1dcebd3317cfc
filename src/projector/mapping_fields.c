/*
 * Compiling field expressions (SPEC §2): the forms a field may take, their
 * transforms, and templates. Each form is a mapping picked out by one key
 * (lookup, collect, ref, const, template, column, in that order of
 * precedence, since a lookup also has a `column`); any other key in it is an
 * error that lists the keys the form takes. A bare string is a column.
 *
 * `transform` goes with column, template and also lookup (its `column` is
 * what is transformed); const, collect and ref take none.
 */
#include <string.h>

#include "projector/mapping_internal.h"

/* ---- templates ----------------------------------------------------------------- */

void mapping_tmpl_clear(mapping_tmpl *t) {
  for (size_t i = 0; i < t->n; i++)
    free(t->segs[i].s);
  free(t->segs);
  t->segs = NULL;
  t->n = 0;
}

static ferry_status tmpl_add(mapping_tmpl *t, tseg_kind kind, const char *s, size_t len) {
  tseg *segs = mapping_realloc(t->segs, (t->n + 1) * sizeof *segs);
  if (!segs) return FERRY_ENOMEM;
  t->segs = segs;
  char *copy = mapping_strndup(s, len);
  if (!copy) return FERRY_ENOMEM;
  t->segs[t->n++] = (tseg){kind, copy, len};
  return FERRY_OK;
}

/* Adds the literal text gathered so far as one segment. */
static ferry_status tmpl_flush(mapping_tmpl *t, mbuf *lit) {
  ferry_status st = FERRY_OK;
  if (lit->len) st = tmpl_add(t, TSEG_TEXT, lit->p, lit->len);
  lit->len = 0;
  return st;
}

/* One placeholder at s[i] == '{'; sets *next past it, or *why on error. */
static ferry_status tmpl_placeholder(mapping_tmpl *t, mbuf *lit, const char *s, size_t len,
                                     size_t i, size_t *next, const char **why) {
  size_t j = i + 1;
  while (j < len && s[j] != '}' && s[j] != '{')
    j++;
  if (j == len)
    *why = "unterminated '{' in template (write '{{' for a literal brace)";
  else if (s[j] == '{')
    *why = "'{' inside a placeholder (write '{{' for a literal brace)";
  else if (j == i + 1)
    *why = "empty placeholder '{}' in template";
  if (*why) return FERRY_EMAPPING;
  ferry_status st = tmpl_flush(t, lit);
  if (st != FERRY_OK) return st;
  int key = j - i - 1 == 4 && memcmp(s + i + 1, "_key", 4) == 0;
  *next = j + 1;
  return tmpl_add(t, key ? TSEG_KEY : TSEG_COLUMN, s + i + 1, j - i - 1);
}

/*
 * "{C}" is column C, "{_key}" the row's key, "{{" and "}}" literal braces (an
 * extension: the SPEC has no way to write a brace). A lone '}' is literal,
 * as the SPEC leaves it. An unterminated '{' is an error.
 */
static ferry_status tmpl_parse(const char *s, size_t len, mapping_tmpl *t, const char **why) {
  mbuf lit;
  ferry_status st = FERRY_OK;
  size_t i = 0;
  mbuf_init(&lit, FERRY_TEXT_MAX);
  while (i < len && st == FERRY_OK) {
    int pair = i + 1 < len && s[i + 1] == s[i];
    if (s[i] == '{' && !pair) {
      st = tmpl_placeholder(t, &lit, s, len, i, &i, why);
    } else {
      st = mbuf_addc(&lit, s[i]);
      i += (s[i] == '{' || s[i] == '}') && pair ? 2 : 1;
    }
  }
  if (st == FERRY_OK) st = tmpl_flush(t, &lit);
  mbuf_free(&lit);
  return st;
}

ferry_status mapping_tmpl_compile(lctx *c, const ynode *n, mapping_tmpl *t) {
  const char *why = NULL;
  if (n->kind != YNODE_SCALAR || n->type != YS_STRING)
    return mapping_bad(c, n->line, "expected a template string, got %s", mapping_kind(n));
  ferry_status st = tmpl_parse(n->text, n->len, t, &why);
  if (st == FERRY_EMAPPING) return mapping_bad(c, n->line, "%s: \"%.200s\"", why, n->text);
  return st;
}

ferry_status mapping_tmpl_default(mapping_tmpl *t) {
  const char *why = NULL;
  return tmpl_parse("{_key}", 6, t, &why);
}

/* ---- transforms ------------------------------------------------------------------ */

static const struct {
  const char *name;
  mapping_transform tr;
} transforms[] = {
    {"trim", TR_TRIM},
    {"lower", TR_LOWER},
    {"upper", TR_UPPER},
    {"to_string", TR_TO_STRING},
    {"to_int", TR_TO_INT},
    {"to_float", TR_TO_FLOAT},
    {"null_if_empty", TR_NULL_IF_EMPTY},
    {"digits", TR_DIGITS},
};

static ferry_status transform_one(lctx *c, const ynode *n, mapping_expr *e) {
  if (n->kind != YNODE_SCALAR || n->type != YS_STRING)
    return mapping_bad(c, n->line, "expected a transform name, got %s", mapping_kind(n));
  for (size_t i = 0; i < sizeof transforms / sizeof transforms[0]; i++) {
    if (strcmp(n->text, transforms[i].name) == 0) {
      e->transforms[e->ntransforms++] = (unsigned char)transforms[i].tr;
      return FERRY_OK;
    }
  }
  return mapping_bad(c, n->line,
                     "unknown transform '%.100s' (known: trim, lower, upper, to_string, to_int, "
                     "to_float, null_if_empty, digits)",
                     n->text);
}

/* `transform: NAME` or `transform: [NAME, ...]`, applied left to right. */
static ferry_status compile_transforms(lctx *c, const ynode *map, mapping_expr *e) {
  const ynode *n = mapping_yaml_get(map, "transform");
  ferry_status st = FERRY_OK;
  if (!n) return FERRY_OK;
  size_t mark = mapping_push(c, "transform");
  size_t count = n->kind == YNODE_SEQ ? n->nkids : 1;
  e->transforms = mapping_malloc(count);
  if (!e->transforms) st = FERRY_ENOMEM;
  for (size_t i = 0; i < count && st == FERRY_OK; i++)
    st = transform_one(c, n->kind == YNODE_SEQ ? n->kids[i] : n, e);
  if (st == FERRY_OK) mapping_pop(c, mark);
  return st;
}

/* ---- the forms ---------------------------------------------------------------------- */

/* A required string-ish member of a form: fn(c, value, out), or an error
 * "a lookup needs 'on'" at the form's line. */
static ferry_status member(lctx *c, const ynode *map, const char *key, const char *form,
                           ferry_status (*fn)(lctx *, const ynode *, char **), char **out) {
  const ynode *v = mapping_yaml_get(map, key);
  if (!v) return mapping_bad(c, map->line, "%s needs '%s'", form, key);
  size_t mark = mapping_push(c, key);
  ferry_status st = fn(c, v, out);
  if (st == FERRY_OK) mapping_pop(c, mark);
  return st;
}

static ferry_status compile_lookup(lctx *c, const ynode *n, mapping_expr *e) {
  static const char *const keys[] = {"lookup", "on", "column", "transform", NULL};
  ferry_status st = mapping_keys(c, n, keys, "a lookup");
  e->kind = EX_LOOKUP;
  if (!st) st = member(c, n, "lookup", "a lookup", mapping_table, &e->table);
  if (!st) st = member(c, n, "on", "a lookup", mapping_column, &e->on);
  if (!st) st = member(c, n, "column", "a lookup", mapping_column, &e->column);
  if (!st) st = compile_transforms(c, n, e);
  return st;
}

static ferry_status compile_collect(lctx *c, const ynode *n, mapping_expr *e) {
  static const char *const keys[] = {"collect", "on", "order_by", "fields", NULL};
  ferry_status st = mapping_keys(c, n, keys, "a collect");
  e->kind = EX_COLLECT;
  if (!st) st = member(c, n, "collect", "a collect", mapping_table, &e->table);
  if (!st) st = member(c, n, "on", "a collect", mapping_column, &e->on);
  if (!st && mapping_yaml_get(n, "order_by"))
    st = member(c, n, "order_by", "a collect", mapping_column, &e->order_by);
  const ynode *f = mapping_yaml_get(n, "fields");
  if (!st && !f) st = mapping_bad(c, n->line, "a collect needs 'fields'");
  if (!st) {
    size_t mark = mapping_push(c, "fields");
    st = mapping_fields_compile(c, f, &e->fields, &e->nfields, 1);
    if (!st) mapping_pop(c, mark);
  }
  return st;
}

/* Resolves E against the file's entity names (file order index). */
static ferry_status ref_target(lctx *c, const ynode *v, mapping_expr *e) {
  if (v->kind != YNODE_SCALAR || v->type != YS_STRING)
    return mapping_bad(c, v->line, "expected an entity name, got %s", mapping_kind(v));
  for (size_t i = 0; i + 1 < c->entities->nkids; i += 2) {
    if (strcmp(c->entities->kids[i]->text, v->text) == 0) {
      e->ref = i / 2;
      return FERRY_OK;
    }
  }
  return mapping_bad(c, v->line, "unknown entity '%.128s'", v->text);
}

static ferry_status compile_ref(lctx *c, const ynode *n, mapping_expr *e) {
  static const char *const keys[] = {"ref", "key", NULL};
  ferry_status st = mapping_keys(c, n, keys, "a ref");
  const ynode *key = mapping_yaml_get(n, "key");
  e->kind = EX_REF;
  if (!st) {
    size_t mark = mapping_push(c, "ref");
    st = ref_target(c, mapping_yaml_get(n, "ref"), e);
    if (!st) mapping_pop(c, mark);
  }
  if (!st && key) {
    size_t mark = mapping_push(c, "key");
    st = mapping_tmpl_compile(c, key, &e->tmpl);
    if (!st) mapping_pop(c, mark);
  } else if (!st) {
    st = mapping_tmpl_default(&e->tmpl);
  }
  return st;
}

static ferry_status compile_const(lctx *c, const ynode *n, mapping_expr *e) {
  static const char *const keys[] = {"const", NULL};
  ferry_status st = mapping_keys(c, n, keys, "a const");
  const ynode *v = mapping_yaml_get(n, "const");
  e->kind = EX_CONST;
  if (st) return st;
  size_t mark = mapping_push(c, "const");
  if (v->kind != YNODE_SCALAR)
    return mapping_bad(c, v->line, "a const must be a scalar, got %s", mapping_kind(v));
  if (v->type == YS_NONFINITE)
    return mapping_bad(c, v->line, "%.40s is not a JSON number", v->text);
  e->konst = mapping_yaml_json(v);
  if (!e->konst) return FERRY_ENOMEM;
  mapping_pop(c, mark);
  return FERRY_OK;
}

static ferry_status compile_template(lctx *c, const ynode *n, mapping_expr *e) {
  static const char *const keys[] = {"template", "transform", NULL};
  ferry_status st = mapping_keys(c, n, keys, "a template");
  e->kind = EX_TEMPLATE;
  if (!st) {
    size_t mark = mapping_push(c, "template");
    st = mapping_tmpl_compile(c, mapping_yaml_get(n, "template"), &e->tmpl);
    if (!st) mapping_pop(c, mark);
  }
  if (!st) st = compile_transforms(c, n, e);
  return st;
}

static ferry_status compile_column(lctx *c, const ynode *n, mapping_expr *e) {
  static const char *const keys[] = {"column", "transform", NULL};
  ferry_status st = mapping_keys(c, n, keys, "a column");
  e->kind = EX_COLUMN;
  if (!st) st = member(c, n, "column", "a column", mapping_column, &e->column);
  if (!st) st = compile_transforms(c, n, e);
  return st;
}

static ferry_status compile_expr(lctx *c, const ynode *n, mapping_expr *e, int in_collect) {
  e->line = n->line;
  e->ref = SIZE_MAX;
  /* the loader's few quadratic steps (join dedup, ref names) stay cheap */
  if (++c->nexprs > FERRY_MAPPING_MAX_EXPRS)
    return mapping_bad(c, n->line, "more than %d field expressions", FERRY_MAPPING_MAX_EXPRS);
  if (n->kind == YNODE_SCALAR && n->type == YS_STRING) {
    e->kind = EX_COLUMN;
    return mapping_column(c, n, &e->column);
  }
  if (n->kind != YNODE_MAP)
    return mapping_bad(c, n->line, "expected a column name or an expression mapping, got %s",
                       mapping_kind(n));
  if (mapping_yaml_get(n, "lookup")) return compile_lookup(c, n, e);
  if (mapping_yaml_get(n, "collect")) {
    if (in_collect)
      return mapping_bad(c, mapping_key_node(n, "collect")->line,
                         "collect inside collect is not allowed");
    return compile_collect(c, n, e);
  }
  if (mapping_yaml_get(n, "ref")) return compile_ref(c, n, e);
  if (mapping_yaml_get(n, "const")) return compile_const(c, n, e);
  if (mapping_yaml_get(n, "template")) return compile_template(c, n, e);
  if (mapping_yaml_get(n, "column")) return compile_column(c, n, e);
  return mapping_bad(c, n->line,
                     "an expression needs one of column, template, const, lookup, collect, ref");
}

/* ---- fields ---------------------------------------------------------------------- */

void mapping_fields_free(mapping_field *f, size_t n) {
  for (size_t i = 0; f && i < n; i++) {
    mapping_expr *e = &f[i].expr;
    free(f[i].name);
    free(e->column);
    mapping_tmpl_clear(&e->tmpl);
    json_decref(e->konst);
    free(e->table);
    free(e->on);
    free(e->order_by);
    mapping_fields_free(e->fields, e->nfields);
    free(e->transforms);
  }
  free(f);
}

static ferry_status field_name(lctx *c, const ynode *key) {
  if (key->len == 0) return mapping_bad(c, key->line, "empty field name");
  if (key->text[0] == '$')
    return mapping_bad(c, key->line, "field name '%.128s' starts with '$' (reserved for refs)",
                       key->text);
  return FERRY_OK;
}

ferry_status mapping_fields_compile(lctx *c, const ynode *n, mapping_field **out, size_t *nout,
                                    int in_collect) {
  ferry_status st = FERRY_OK;
  *out = NULL;
  *nout = 0;
  if (n->kind != YNODE_MAP)
    return mapping_bad(c, n->line, "expected a mapping of fields, got %s", mapping_kind(n));
  size_t count = n->nkids / 2;
  mapping_field *f = mapping_calloc(count, sizeof *f);
  if (!f) return FERRY_ENOMEM;
  *out = f;
  *nout = count;
  for (size_t i = 0; i < count && st == FERRY_OK; i++) {
    const ynode *key = n->kids[2 * i];
    size_t mark = mapping_push(c, key->text);
    st = field_name(c, key);
    if (!st) {
      f[i].name = mapping_strndup(key->text, key->len);
      if (!f[i].name) st = FERRY_ENOMEM;
    }
    if (!st) st = compile_expr(c, n->kids[2 * i + 1], &f[i].expr, in_collect);
    if (!st) mapping_pop(c, mark);
  }
  return st;
}
