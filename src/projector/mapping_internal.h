/*
 * The mapping module's private parts, shared by its files: the parsed YAML
 * tree (mapping_yaml.c), the compiled mapping (mapping_load.c), the evaluator
 * (mapping_eval.c) and the value rules (mapping_value.c). Nothing outside
 * src/projector/mapping*.c includes this, except the module's unit test.
 */
#ifndef FERRY_PROJECTOR_MAPPING_INTERNAL_H
#define FERRY_PROJECTOR_MAPPING_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ferry/mapping.h"

/* ---- allocation ---------------------------------------------------------- */

/*
 * Every allocation of the module goes through these, so the unit test can
 * make the n-th one fail and check that each failure path reports
 * FERRY_ENOMEM and leaks nothing. mapping_alloc_countdown < 0 (the default)
 * never fails; otherwise it counts down and the call that finds it at 0
 * fails. The test points jansson's allocator at the same countdown.
 */
extern long mapping_alloc_countdown;
void *mapping_malloc(size_t n);
void *mapping_calloc(size_t n, size_t size);
void *mapping_realloc(void *p, size_t n);
char *mapping_strndup(const char *s, size_t n);
char *mapping_strdup(const char *s);
int mapping_alloc_fails(void); /* consumes one tick of the countdown */

/* ---- a growing byte buffer with a hard cap ------------------------------- */

typedef struct mbuf {
  char *p;
  size_t len, cap, max; /* max: FERRY_ETOOBIG past it */
} mbuf;

void mbuf_init(mbuf *b, size_t max);
ferry_status mbuf_add(mbuf *b, const void *s, size_t n);
ferry_status mbuf_addc(mbuf *b, char c);
ferry_status mbuf_adds(mbuf *b, const char *s);
/* The text so far, NUL-terminated, handed over (the buffer is reset); NULL on OOM. */
char *mbuf_take(mbuf *b);
void mbuf_free(mbuf *b);

/* ---- values (mapping_value.c) --------------------------------------------- */

/* Appends v rendered as text (ferry_value_text's rules). */
ferry_status mapping_text_add(mbuf *b, const json_t *v);
/* Formats a finite double; canonical selects the JSON form for integral
 * values outside int64. buf holds at least MAPPING_NUMBUF bytes. */
#define MAPPING_NUMBUF 400
void mapping_real_format(double d, int canonical, char *buf);
/* The decimal number forms YAML's core schema and the to_int/to_float
 * transforms accept: 0 none, 1 an integer ([-+]?[0-9]+), 2 a real
 * ([-+]?(digits[.digits*]|.digits)([eE][-+]?digits)?). No hex, inf or nan. */
int mapping_number_syntax(const char *s, size_t n);
/* 1 if s is well-formed UTF-8. */
int mapping_utf8_valid(const char *s, size_t n);
/* A marker {"$ref": "entity/key"} (key of keylen bytes), or NULL (OOM). */
json_t *mapping_ref_new(const char *entity, const char *key, size_t keylen);
/* 1 if name is a valid entity name (1..FERRY_ENTITY_NAME_MAX of [A-Za-z0-9_.-]). */
int mapping_entity_name_valid(const char *s, size_t n);

/* ---- the parsed YAML (mapping_yaml.c) -------------------------------------- */

typedef enum ynode_kind { YNODE_SCALAR, YNODE_MAP, YNODE_SEQ } ynode_kind;

/* How a scalar resolves (YAML 1.2 core schema; quoted and block scalars and
 * !!str are always strings). YS_NONFINITE is .inf/.nan, which JSON lacks. */
typedef enum yscalar_type {
  YS_NULL,
  YS_BOOL,
  YS_INT,
  YS_REAL,
  YS_NONFINITE,
  YS_STRING
} yscalar_type;

typedef struct ynode {
  ynode_kind kind;
  size_t line; /* 1-based line where the node starts */
  /* scalars */
  yscalar_type type;
  char *text; /* NUL-terminated; YAML scalars never hold a NUL (rejected) */
  size_t len;
  int boolean;
  int64_t integer;
  double real;
  /* maps: kids[2k] is a key (a scalar), kids[2k+1] its value; seqs: items */
  struct ynode **kids;
  size_t nkids, cap;
} ynode;

/* Parses one YAML document. Errors (FERRY_EMAPPING) name `name` and the line:
 * syntax errors, aliases, tags other than !!str, non-scalar or duplicate
 * keys, NUL bytes, nesting past FERRY_MAPPING_MAX_DEPTH. */
ferry_status mapping_yaml_parse(const char *name, const char *buf, size_t len, ynode **out,
                                ferry_error *err);
void mapping_yaml_free(ynode *n);
/* The node as JSON (scalars typed; non-finite reals as their text), a new
 * reference, or NULL when out of memory. */
json_t *mapping_yaml_json(const ynode *n);
/* The value under key in map n, or NULL. */
const ynode *mapping_yaml_get(const ynode *n, const char *key);

/* ---- the compiled mapping (mapping_load.c) ------------------------------ */

typedef enum tseg_kind { TSEG_TEXT, TSEG_COLUMN, TSEG_KEY } tseg_kind;

typedef struct tseg {
  tseg_kind kind;
  char *s; /* TEXT: the literal (escapes undone); COLUMN: the column name */
  size_t len;
} tseg;

typedef struct mapping_tmpl {
  tseg *segs;
  size_t n;
} mapping_tmpl;

typedef enum mapping_transform {
  TR_TRIM = 1,
  TR_LOWER,
  TR_UPPER,
  TR_TO_STRING,
  TR_TO_INT,
  TR_TO_FLOAT,
  TR_NULL_IF_EMPTY,
  TR_DIGITS
} mapping_transform;

typedef enum expr_kind {
  EX_COLUMN,
  EX_TEMPLATE,
  EX_CONST,
  EX_LOOKUP,
  EX_COLLECT,
  EX_REF
} expr_kind;

typedef struct mapping_field mapping_field;

typedef struct mapping_expr {
  expr_kind kind;
  size_t line;
  char *column;          /* COLUMN: C; LOOKUP: D */
  mapping_tmpl tmpl;     /* TEMPLATE; REF: the key */
  json_t *konst;         /* CONST */
  char *table;           /* LOOKUP, COLLECT: T */
  char *on;              /* LOOKUP, COLLECT: C */
  char *order_by;        /* COLLECT: D, or NULL for the child key */
  mapping_field *fields; /* COLLECT */
  size_t nfields;
  size_t ref;                /* REF: E's index (file order while loading, then rank) */
  unsigned char *transforms; /* mapping_transform values, applied in order */
  size_t ntransforms;
} mapping_expr;

struct mapping_field {
  char *name;
  mapping_expr expr;
};

typedef enum filter_kind {
  FL_EQUALS,
  FL_NOT_EQUALS,
  FL_IS_NULL,
  FL_IN,
  FL_ALL,
  FL_ANY,
  FL_NOT
} filter_kind;

typedef struct mapping_filter {
  filter_kind kind;
  char *column;
  json_t *value;               /* EQUALS, NOT_EQUALS: V; IN: the array */
  int is_null;                 /* IS_NULL: wanted */
  struct mapping_filter *subs; /* ALL, ANY: the list; NOT: one */
  size_t nsubs;
} mapping_filter;

typedef struct mapping_entity {
  char *name;
  char *endpoint;
  char *source;
  size_t line;
  mapping_tmpl key;
  mapping_filter *filter; /* NULL: every row */
  mapping_field *fields;
  size_t nfields;
  size_t *refs; /* referenced entities, ascending, unique */
  size_t nrefs;
} mapping_entity;

struct ferry_mapping {
  char *name;
  char hash[33];
  mapping_entity *entities; /* topological order */
  size_t n;
  ferry_mapping_join *joins;
  size_t njoins;
  const char **tables; /* borrowed from the entities' strings */
  size_t ntables;
};

/* ---- loading (mapping_load.c, mapping_fields.c, mapping_link.c) -------- */

/* What the loader carries down the tree: where it is, for messages
 * ("FILE:LINE: entities.contact.fields.email: problem"). */
typedef struct lctx {
  const char *name;
  ferry_error *err;
  char path[512];
  size_t plen;
  const ynode *entities; /* the entities mapping, to resolve ref names */
  size_t nexprs;         /* so far, against FERRY_MAPPING_MAX_EXPRS */
} lctx;

/* Sets err to FERRY_EMAPPING with file, line, path and message; returns it. */
ferry_status mapping_bad(lctx *c, size_t line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Appends ".seg" (or "[i]") to the path; pop restores the returned mark. */
size_t mapping_push(lctx *c, const char *seg);
size_t mapping_push_index(lctx *c, size_t i);
void mapping_pop(lctx *c, size_t mark);
/* "a mapping", "a list", "null", "a boolean", ... for messages. */
const char *mapping_kind(const ynode *n);
/* The key node for key in map (for its line), or NULL. */
const ynode *mapping_key_node(const ynode *map, const char *key);
/* Rejects any key of map not in allowed (NULL-terminated); what names the
 * construct in the message ("a lookup"). */
ferry_status mapping_keys(lctx *c, const ynode *map, const char *const *allowed, const char *what);
/* A scalar that resolves to a non-empty string, copied. */
ferry_status mapping_string(lctx *c, const ynode *n, const char *what, char **out);
/* A table name (SPEC §1: 1-128 of [A-Za-z0-9_.]) or a column name (1-128
 * characters), copied. */
ferry_status mapping_table(lctx *c, const ynode *n, char **out);
ferry_status mapping_column(lctx *c, const ynode *n, char **out);

/* Compiles a fields mapping (entity or collect). On any return *out and *nout
 * hold what was built, for mapping_fields_free. */
ferry_status mapping_fields_compile(lctx *c, const ynode *n, mapping_field **out, size_t *nout,
                                    int in_collect);
void mapping_fields_free(mapping_field *f, size_t n);
/* Compiles a template string ("{C}", "{_key}", "{{" and "}}" for braces). */
ferry_status mapping_tmpl_compile(lctx *c, const ynode *n, mapping_tmpl *t);
ferry_status mapping_tmpl_default(mapping_tmpl *t); /* "{_key}" */
void mapping_tmpl_clear(mapping_tmpl *t);

/* After every entity compiled: orders entities (refs first, cycles are
 * errors), lists joins and tables, and hashes root (the parsed file). */
ferry_status mapping_link(ferry_mapping *m, const ynode *root, ferry_error *err);

#endif /* FERRY_PROJECTOR_MAPPING_INTERNAL_H */
