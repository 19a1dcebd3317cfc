/*
 * What the configuration file may say (SPEC §6, plus cloud.rate_limit), and
 * the walk that checks a parsed YAML document against it and fills a
 * ferry_config.
 *
 * DESIGN
 * Each mapping in the file has a table of the keys it may hold (struct
 * field): the name, the kind of value, where the value goes (an offset into
 * the struct being filled), whether it is required, its default. Defaults are
 * written first, for the whole tree, so a key the file leaves out (or sets to
 * null) simply keeps its default; the walk then overwrites what the file sets.
 * walk_mapping checks one mapping against one table: keys are unique scalars
 * (check_keys), each is in the table, each value is of its kind (set_field);
 * then it reports the first required key that was not given. `customers` is
 * the one mapping whose keys are data, not names, so it has its own walk,
 * which runs the customer table over each value. The tables are at most two
 * deep, so the walk's recursion is bounded whatever the document holds, even
 * an alias that points back at its own ancestor.
 *
 * Every message reads "FILE:LINE: KEY.PATH: problem", with the line of the
 * value that is wrong (libyaml's marks count from 0; we add 1), or of the key
 * whose mapping lacks a required key. Keys and values are echoed escaped and
 * cut short, except the values of *_env keys: whoever wrote a secret there
 * instead of a variable's name must not find it in a log.
 */
#include "config/schema.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/lookup.h"
#include "config/path.h"

#define SHOWN_MAX 48                     /* bytes of a key or value echoed in a message */
#define SHOWN_BUF (SHOWN_MAX * 4 + 4)    /* escaped: up to 4 bytes each, "..." and NUL */
#define DESC_BUF (SHOWN_BUF + 32)        /* "the quoted string " + shown */
#define KEYPATH_BUF (2 * SHOWN_BUF + 64) /* prefix.key, each part shown or a known name */
#define FIELDS_MAX 16                    /* longest table; walk_mapping keeps a flag each */

typedef enum kind {
  K_STRING,   /* any non-empty string */
  K_PATH,     /* a path, made absolute against the file's folder */
  K_URL,      /* an http:// or https:// URL */
  K_ENV,      /* the name of an environment variable */
  K_LISTEN,   /* host:port */
  K_INT,      /* an int in [min, max] */
  K_UINT64,   /* a uint64_t in [min, max] */
  K_NUMBER,   /* a finite double >= min */
  K_SECTION,  /* a mapping with its own table, filling the same struct */
  K_CUSTOMERS /* customer id -> the customer table */
} kind;

typedef struct schema schema;

typedef struct field {
  const char *name;
  kind kind;
  size_t off; /* where the value goes in the struct being filled */
  int required;
  const char *sdef;         /* a string's default; NULL: none */
  long long ndef, min, max; /* a number's default and bounds */
  const schema *sub;        /* K_SECTION's table */
} field;

struct schema {
  const field *fields;
  size_t n;
};

#define CFG(m) offsetof(ferry_config, m)
#define CUST(m) offsetof(ferry_customer_config, m)
#define COUNT(a) (sizeof(a) / sizeof(a)[0])
/* clang-format off */
/* table rows: strings, numbers, sections */
#define STR(name, kind, off, req, def)      {name, kind, off, req, def, 0, 0, 0, NULL}
#define NUM(name, kind, off, def, min, max) {name, kind, off, 0, NULL, def, min, max, NULL}
#define SEC(name, kind, req, sub)           {name, kind, 0, req, NULL, 0, 0, 0, sub}

static const field cloud_fields[] = {
  /*  name                  kind      where                          required  default */
  STR("base_url",           K_URL,    CFG(cloud.base_url),           1,        NULL),
  STR("token_env",          K_ENV,    CFG(cloud.token_env),          0,        NULL),
  STR("id_field",           K_STRING, CFG(cloud.id_field),           0,        "id"),
  STR("external_key_field", K_STRING, CFG(cloud.external_key_field), 0,        "legacy_key"),
  /*  name                  kind      where                     default  min  max */
  NUM("concurrency",        K_INT,    CFG(cloud.concurrency),   16,      1,   1024),
  NUM("timeout_ms",         K_INT,    CFG(cloud.timeout_ms),    10000,   1,   INT_MAX),
  NUM("max_attempts",       K_INT,    CFG(cloud.max_attempts),  8,       1,   INT_MAX),
  NUM("rate_limit",         K_NUMBER, CFG(cloud.rate_limit),    0,       0,   0), /* extension */
};

static const field service_fields[] = {
  STR("listen",             K_LISTEN, CFG(service.listen),          0, "127.0.0.1:8470"),
  STR("admin_token_env",    K_ENV,    CFG(service.admin_token_env), 0, "FERRY_ADMIN_TOKEN"),
  NUM("max_batch_bytes",    K_UINT64, CFG(service.max_batch_bytes), 67108864, 1, LLONG_MAX),
};

static const schema cloud_schema = {cloud_fields, COUNT(cloud_fields)};
static const schema service_schema = {service_fields, COUNT(service_fields)};

static const field top_fields[] = {
  STR("mapping",            K_PATH,   CFG(mapping), 1, NULL),
  STR("data",               K_PATH,   CFG(data),    0, NULL),
  SEC("cloud",              K_SECTION,   1, &cloud_schema),
  SEC("service",            K_SECTION,   0, &service_schema),
  SEC("customers",          K_CUSTOMERS, 0, NULL),
};

/* NULL (no default) means "as the global setting", or "none" */
static const field customer_fields[] = {
  STR("base_url",           K_URL,    CUST(base_url),         0, NULL),
  STR("token_env",          K_ENV,    CUST(token_env),        0, NULL),
  STR("ingest_token_env",   K_ENV,    CUST(ingest_token_env), 0, NULL),
  STR("feed_url",           K_URL,    CUST(feed_url),         0, NULL),
};
/* clang-format on */

static const schema top_schema = {top_fields, COUNT(top_fields)};
static const schema customer_schema = {customer_fields, COUNT(customer_fields)};

/* The state of one walk. */
typedef struct walk {
  ferry_config *cfg;
  yaml_document_t *doc;
  const char *name; /* the file, as messages call it */
  const char *dir;  /* where relative paths start */
  ferry_error *err;
} walk;

static ferry_status walk_mapping(walk *w, const yaml_node_t *node, const char *path, size_t line,
                                 const schema *s, void *base);

/* ---- reading nodes -------------------------------------------------------- */

static size_t line_of(const yaml_node_t *n) {
  return n->start_mark.line + 1;
}
static const char *text_of(const yaml_node_t *n) {
  return (const char *)n->data.scalar.value;
}

static const yaml_node_t *node_at(const walk *w, yaml_node_item_t i) {
  return yaml_document_get_node(w->doc, i);
}

/* YAML's null: "~", "null", an empty plain scalar, or anything tagged !!null. */
static int is_null(const yaml_node_t *n) {
  const char *t;
  if (n->type != YAML_SCALAR_NODE) return 0;
  t = text_of(n);
  if (n->tag && strcmp((const char *)n->tag, YAML_NULL_TAG) == 0) return 1;
  if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
  return !*t || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") || !strcmp(t, "NULL");
}

/* Escapes s (len bytes) into out, cut to SHOWN_MAX bytes with "...". Cuts
 * fall between UTF-8 characters: libyaml has checked the input is UTF-8. */
static void escape(char out[SHOWN_BUF], const char *s, size_t len) {
  size_t take = len > SHOWN_MAX ? SHOWN_MAX : len;
  size_t o = 0;
  if (take < len)
    while (take > 0 && ((unsigned char)s[take] & 0xC0) == 0x80)
      take--;
  for (size_t i = 0; i < take; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c < 0x20 || c == 0x7f) {
      o += (size_t)snprintf(out + o, SHOWN_BUF - o, "\\x%02x", c);
    } else {
      out[o++] = (char)c;
    }
  }
  if (take < len) {
    memcpy(out + o, "...", 3);
    o += 3;
  }
  out[o] = '\0';
}

/* A value as messages show it after "got": its kind, or the scalar quoted.
 * numeric marks quoted scalars, which look like numbers but are strings. */
static const char *describe(const yaml_node_t *n, char out[DESC_BUF], int numeric) {
  char shown[SHOWN_BUF];
  if (n->type == YAML_MAPPING_NODE) return "a mapping";
  if (n->type == YAML_SEQUENCE_NODE) return "a sequence";
  if (is_null(n)) return "null";
  escape(shown, text_of(n), n->data.scalar.length);
  snprintf(out, DESC_BUF, "%s\"%s\"",
           numeric && n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ? "the quoted string " : "",
           shown);
  return out;
}

/* prefix.key; prefixes are built here, so it always fits, but if it ever did
 * not the cut would show. */
static void keypath(char out[KEYPATH_BUF], const char *prefix, const char *key) {
  int n = snprintf(out, KEYPATH_BUF, "%s%s%s", prefix, *prefix ? "." : "", key);
  if (n < 0 || n >= KEYPATH_BUF) memcpy(out + KEYPATH_BUF - 4, "...", 4);
}

static const char *kind_desc(kind k) {
  switch (k) {
  case K_STRING: return "a string";
  case K_PATH: return "a path";
  case K_URL: return "an http:// or https:// URL";
  case K_ENV: return "the name of an environment variable";
  case K_LISTEN: return "host:port";
  case K_INT:
  case K_UINT64: return "an integer";
  case K_NUMBER: return "a number";
  case K_SECTION:
  case K_CUSTOMERS: return "a mapping";
  }
  return "a value";
}

/* ---- messages ------------------------------------------------------------- */

/* Sets FERRY_ECONFIG: "name:line: path: what", leaving out a 0 line or an
 * empty path. */
static ferry_status fail(walk *w, size_t line, const char *path, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static ferry_status fail(walk *w, size_t line, const char *path, const char *fmt, ...) {
  char what[768];
  char where[64] = "";
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (line) snprintf(where, sizeof where, ":%zu", line);
  return ferry_error_set(w->err, FERRY_ECONFIG, "%s%s: %s%s%s", w->name, where, path ? path : "",
                         path && *path ? ": " : "", what);
}

static ferry_status oom(walk *w) {
  return ferry_error_set(w->err, FERRY_ENOMEM, "%s: out of memory", w->name);
}

/* ---- values --------------------------------------------------------------- */

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

/* YAML 1.2's core-schema decimal integers, or with frac also its floats:
 * [-+]? digits, then ("." digits?)? ([eE] [-+]? digits)?, with a digit somewhere
 * before the exponent. Leaves out what strtod would also take (hex, inf, nan). */
static int is_decimal(const char *s, int frac) {
  size_t digits = 0;
  if (*s == '+' || *s == '-') s++;
  for (; is_digit(*s); s++)
    digits++;
  if (frac && *s == '.')
    for (s++; is_digit(*s); s++)
      digits++;
  if (frac && digits && (*s == 'e' || *s == 'E')) {
    s++;
    if (*s == '+' || *s == '-') s++;
    if (!is_digit(*s)) return 0;
    while (is_digit(*s))
      s++;
  }
  return digits > 0 && *s == '\0';
}

static int is_env_name(const char *s) {
  if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_')) return 0;
  for (s++; *s; s++)
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || is_digit(*s) || *s == '_'))
      return 0;
  return 1;
}

/* No spaces or control bytes: neither curl nor a listener would want them. */
static int is_compact(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s <= 0x20 || (unsigned char)*s == 0x7f) return 0;
  return 1;
}

static int is_url(const char *s) {
  size_t n = !strncasecmp(s, "http://", 7) ? 7 : !strncasecmp(s, "https://", 8) ? 8 : 0;
  return n && s[n] && is_compact(s);
}

/* host:port with a non-empty host ("[::1]" included) and a port 0..65535. */
static int is_listen(const char *s) {
  const char *colon = strrchr(s, ':');
  const char *p;
  long port = 0;
  if (!colon || colon == s || !colon[1] || !is_compact(s)) return 0;
  for (p = colon + 1; *p; p++) {
    if (!is_digit(*p) || p - colon > 5) return 0;
    port = port * 10 + (*p - '0');
  }
  return port <= 65535;
}

/* Checks a string's form for its kind; FERRY_OK or the message set. */
static ferry_status check_string(walk *w, const field *f, const yaml_node_t *v, const char *path) {
  ferry_status st = FERRY_OK;
  const char *t = text_of(v);
  char got[DESC_BUF];
  size_t line = line_of(v);

  if (strlen(t) != v->data.scalar.length)
    st = fail(w, line, path, "contains a NUL byte");
  else if (!*t)
    st = fail(w, line, path, "must not be empty");
  else if (f->kind == K_URL && !is_url(t))
    st = fail(w, line, path, "expected %s, got %s", kind_desc(f->kind), describe(v, got, 0));
  else if (f->kind == K_LISTEN && !is_listen(t))
    st = fail(w, line, path, "expected %s, got %s", kind_desc(f->kind), describe(v, got, 0));
  else if (f->kind == K_ENV && !is_env_name(t))
    /* not echoed: it may be the secret itself */
    st = fail(w, line, path,
              "expected the name of an environment variable (letters, digits and _, not "
              "starting with a digit); the secret itself belongs in that variable");
  return st;
}

static ferry_status set_string(walk *w, const field *f, const yaml_node_t *v, const char *path,
                               void *base) {
  ferry_status st = FERRY_OK;
  char **slot = (char **)((char *)base + f->off);
  char got[DESC_BUF];
  char *copy = NULL;

  if (v->type != YAML_SCALAR_NODE) {
    st = fail(w, line_of(v), path, "expected %s, got %s", kind_desc(f->kind), describe(v, got, 0));
    goto done;
  }
  st = check_string(w, f, v, path);
  if (st) goto done;
  copy = f->kind == K_PATH ? ferry_config_path_resolve(w->dir, text_of(v)) : strdup(text_of(v));
  if (!copy) {
    st = oom(w);
    goto done;
  }
  free(*slot); /* the default */
  *slot = copy;

done:
  return st;
}

static ferry_status set_int(walk *w, const field *f, const yaml_node_t *v, const char *path,
                            void *base) {
  ferry_status st = FERRY_OK;
  void *slot = (char *)base + f->off;
  char got[DESC_BUF], shown[SHOWN_BUF];
  long long n = 0;
  int over = 0, under = 0;

  /* a quoted "16" is a string in YAML; saying so beats a silent guess */
  if (v->type != YAML_SCALAR_NODE || v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
      !is_decimal(text_of(v), 0)) {
    st = fail(w, line_of(v), path, "expected an integer, got %s", describe(v, got, 1));
    goto done;
  }
  errno = 0;
  n = strtoll(text_of(v), NULL, 10);
  over = (errno == ERANGE && n > 0) || n > f->max;
  under = (errno == ERANGE && n < 0) || n < f->min;
  if (over || under) {
    escape(shown, text_of(v), v->data.scalar.length); /* digits, maybe very many */
    if (f->max < INT_MAX)
      st =
          fail(w, line_of(v), path, "must be between %lld and %lld, got %s", f->min, f->max, shown);
    else if (under)
      st = fail(w, line_of(v), path, "must be at least %lld, got %s", f->min, shown);
    else
      st = fail(w, line_of(v), path, "must be at most %lld, got %s", f->max, shown);
    goto done;
  }
  if (f->kind == K_UINT64)
    *(uint64_t *)slot = (uint64_t)n;
  else
    *(int *)slot = (int)n;

done:
  return st;
}

static ferry_status set_number(walk *w, const field *f, const yaml_node_t *v, const char *path,
                               void *base) {
  ferry_status st = FERRY_OK;
  char got[DESC_BUF], shown[SHOWN_BUF];
  char *end = NULL;
  double d = 0;

  if (v->type != YAML_SCALAR_NODE || v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
      !is_decimal(text_of(v), 1)) {
    st = fail(w, line_of(v), path, "expected a number, got %s", describe(v, got, 1));
    goto done;
  }
  d = strtod(text_of(v), &end);
  /* strtod follows the locale's decimal point; a partial parse is refused
   * rather than read as a different number */
  if (*end || !isfinite(d)) {
    st = fail(w, line_of(v), path, "expected a finite number, got %s", describe(v, got, 1));
    goto done;
  }
  if (d < (double)f->min) {
    escape(shown, text_of(v), v->data.scalar.length);
    st = fail(w, line_of(v), path, "must be at least %lld, got %s", f->min, shown);
    goto done;
  }
  *(double *)((char *)base + f->off) = d;

done:
  return st;
}

/* ---- mappings ------------------------------------------------------------- */

static int same_key(const yaml_node_t *a, const yaml_node_t *b) {
  return a->data.scalar.length == b->data.scalar.length &&
         !memcmp(a->data.scalar.value, b->data.scalar.value, a->data.scalar.length);
}

/* Orders keys by text, then by place in the file, so twins sit together with
 * the earlier one first. */
static int cmp_keys(const void *pa, const void *pb) {
  const yaml_node_t *a = *(const yaml_node_t *const *)pa;
  const yaml_node_t *b = *(const yaml_node_t *const *)pb;
  size_t la = a->data.scalar.length, lb = b->data.scalar.length;
  int c = memcmp(a->data.scalar.value, b->data.scalar.value, la < lb ? la : lb);
  if (c) return c;
  if (la != lb) return la < lb ? -1 : 1;
  return (a->start_mark.index > b->start_mark.index) - (a->start_mark.index < b->start_mark.index);
}

/* Every key of map is a scalar without NUL bytes, and none comes twice. Sorts
 * rather than compares pairs: `customers` may hold many thousand. Of several
 * twins, reports the one earliest in the file. */
static ferry_status check_keys(walk *w, const yaml_node_t *map, const char *path) {
  ferry_status st = FERRY_OK;
  const yaml_node_pair_t *pairs = map->data.mapping.pairs.start;
  size_t n = (size_t)(map->data.mapping.pairs.top - pairs);
  const yaml_node_t **keys = NULL;
  const yaml_node_t *dup = NULL, *first = NULL;
  char got[DESC_BUF], shown[SHOWN_BUF], kp[KEYPATH_BUF];

  if (n == 0) goto done;
  keys = malloc(n * sizeof *keys);
  if (!keys) {
    st = oom(w);
    goto done;
  }
  for (size_t i = 0; i < n; i++) {
    const yaml_node_t *k = node_at(w, pairs[i].key);
    if (k->type != YAML_SCALAR_NODE) {
      st = fail(w, line_of(k), path, "keys must be strings, got %s", describe(k, got, 0));
      goto done;
    }
    if (strlen(text_of(k)) != k->data.scalar.length) {
      st = fail(w, line_of(k), path, "a key contains a NUL byte");
      goto done;
    }
    keys[i] = k;
  }
  qsort(keys, n, sizeof *keys, cmp_keys);
  for (size_t i = 1; i < n; i++)
    if (same_key(keys[i - 1], keys[i]) &&
        (!dup || keys[i]->start_mark.index < dup->start_mark.index)) {
      dup = keys[i];
      first = keys[i - 1];
    }
  if (dup) {
    escape(shown, text_of(dup), dup->data.scalar.length);
    keypath(kp, path, shown);
    st = fail(w, line_of(dup), kp, "duplicate key (first at line %zu)", line_of(first));
  }

done:
  free(keys);
  return st;
}

static const field *find_field(const schema *s, const yaml_node_t *key) {
  for (size_t i = 0; i < s->n; i++)
    if (strlen(s->fields[i].name) == key->data.scalar.length &&
        !memcmp(s->fields[i].name, key->data.scalar.value, key->data.scalar.length))
      return &s->fields[i];
  return NULL;
}

/* Each customer id -> the customer table. The list is sized and zeroed before
 * the first entry is filled, so a failure part-way leaves ferry_config_free a
 * list it can walk. */
static ferry_status walk_customers(walk *w, const yaml_node_t *node, const char *path) {
  ferry_status st = FERRY_OK;
  ferry_config *cfg = w->cfg;
  const yaml_node_pair_t *pairs;
  size_t n;
  char got[DESC_BUF], shown[SHOWN_BUF], kp[KEYPATH_BUF];

  if (is_null(node)) goto done;
  if (node->type != YAML_MAPPING_NODE) {
    st = fail(w, line_of(node), path, "expected a mapping of customer ids, got %s",
              describe(node, got, 0));
    goto done;
  }
  st = check_keys(w, node, path);
  if (st) goto done;
  pairs = node->data.mapping.pairs.start;
  n = (size_t)(node->data.mapping.pairs.top - pairs);
  if (n == 0) goto done;
  cfg->customers = calloc(n, sizeof *cfg->customers);
  if (!cfg->customers) {
    st = oom(w);
    goto done;
  }
  cfg->ncustomers = n;
  for (size_t i = 0; i < n && !st; i++) {
    const yaml_node_t *key = node_at(w, pairs[i].key);
    ferry_customer_config *c = &cfg->customers[i];
    if (!ferry_customer_valid(text_of(key))) {
      escape(shown, text_of(key), key->data.scalar.length);
      keypath(kp, path, shown);
      st = fail(w, line_of(key), kp,
                "invalid customer id: 1 to %d of the characters A-Z a-z 0-9 _ . -",
                FERRY_CUSTOMER_MAX);
      break;
    }
    c->id = strdup(text_of(key));
    keypath(kp, path, text_of(key)); /* valid ids are short and need no escaping */
    if (!c->id || ferry_config_lookup_add_key(cfg, kp, line_of(key))) {
      st = oom(w);
      break;
    }
    st = walk_mapping(w, node_at(w, pairs[i].value), kp, line_of(key), &customer_schema, c);
  }

done:
  return st;
}

/* Sets one known key from its value; *given says whether the file gave one
 * (null counts as not given). */
static ferry_status set_field(walk *w, const field *f, const yaml_node_t *key,
                              const yaml_node_t *val, const char *path, void *base, int *given) {
  ferry_status st = FERRY_OK;

  if (ferry_config_lookup_add_key(w->cfg, path, line_of(key))) {
    st = oom(w);
    goto done;
  }
  /* a null section is an empty one: `service:` alone keeps the defaults */
  *given = f->kind == K_SECTION || f->kind == K_CUSTOMERS || !is_null(val);
  switch (f->kind) {
  case K_SECTION: st = walk_mapping(w, val, path, line_of(key), f->sub, base); break;
  case K_CUSTOMERS: st = walk_customers(w, val, path); break;
  case K_INT:
  case K_UINT64:
    if (*given) st = set_int(w, f, val, path, base);
    break;
  case K_NUMBER:
    if (*given) st = set_number(w, f, val, path, base);
    break;
  case K_STRING:
  case K_PATH:
  case K_URL:
  case K_ENV:
  case K_LISTEN:
    if (*given) st = set_string(w, f, val, path, base);
    break;
  }
  if (!st && !*given && f->required)
    st = fail(w, line_of(key), path, "expected %s, got null", kind_desc(f->kind));

done:
  return st;
}

/* Checks node, a mapping at path (line: where its key stands, 0 for the top),
 * against s, filling base. NULL or null node: an empty mapping. */
static ferry_status walk_mapping(walk *w, const yaml_node_t *node, const char *path, size_t line,
                                 const schema *s, void *base) {
  ferry_status st = FERRY_OK;
  int given[FIELDS_MAX] = {0};
  char got[DESC_BUF], shown[SHOWN_BUF], kp[KEYPATH_BUF];

  if (node && !is_null(node)) {
    const yaml_node_pair_t *p;
    if (node->type != YAML_MAPPING_NODE) {
      st = fail(w, line_of(node), path, "expected a mapping, got %s", describe(node, got, 0));
      goto done;
    }
    st = check_keys(w, node, path);
    for (p = node->data.mapping.pairs.start; !st && p < node->data.mapping.pairs.top; p++) {
      const yaml_node_t *key = node_at(w, p->key);
      const field *f = find_field(s, key);
      if (!f) {
        escape(shown, text_of(key), key->data.scalar.length);
        keypath(kp, path, shown);
        st = fail(w, line_of(key), kp, "unknown key");
        break;
      }
      keypath(kp, path, f->name);
      st = set_field(w, f, key, node_at(w, p->value), kp, base, &given[f - s->fields]);
    }
    if (st) goto done;
  }
  for (size_t i = 0; i < s->n; i++) {
    if (s->fields[i].required && !given[i]) {
      keypath(kp, path, s->fields[i].name);
      st = fail(w, line, NULL, "missing required key %s", kp);
      goto done;
    }
  }

done:
  return st;
}

/* Writes every default of s (and its sections) into base. */
static ferry_status apply_defaults(const schema *s, void *base) {
  ferry_status st = FERRY_OK;
  for (size_t i = 0; i < s->n && !st; i++) {
    const field *f = &s->fields[i];
    void *slot = (char *)base + f->off;
    switch (f->kind) {
    case K_SECTION: st = apply_defaults(f->sub, base); break;
    case K_CUSTOMERS: break;
    case K_INT: *(int *)slot = (int)f->ndef; break;
    case K_UINT64: *(uint64_t *)slot = (uint64_t)f->ndef; break;
    case K_NUMBER: *(double *)slot = (double)f->ndef; break;
    case K_STRING:
    case K_PATH:
    case K_URL:
    case K_ENV:
    case K_LISTEN:
      if (f->sdef) {
        char *copy = strdup(f->sdef);
        if (!copy) {
          st = FERRY_ENOMEM;
          break;
        }
        free(*(char **)slot);
        *(char **)slot = copy;
      }
      break;
    }
  }
  return st;
}

ferry_status ferry_config_schema_apply(ferry_config *cfg, yaml_document_t *doc, yaml_node_t *root,
                                       const char *name, const char *dir, ferry_error *err) {
  ferry_status st = FERRY_OK;
  walk w = {.cfg = cfg, .doc = doc, .name = name, .dir = dir, .err = err};

  _Static_assert(COUNT(top_fields) <= FIELDS_MAX, "FIELDS_MAX");
  _Static_assert(COUNT(cloud_fields) <= FIELDS_MAX, "FIELDS_MAX");
  _Static_assert(COUNT(service_fields) <= FIELDS_MAX, "FIELDS_MAX");
  _Static_assert(COUNT(customer_fields) <= FIELDS_MAX, "FIELDS_MAX");

  if (apply_defaults(&top_schema, cfg)) {
    st = oom(&w);
    goto done;
  }
  /* "---" alone, or "~", says no more than an empty file */
  if (!root || is_null(root)) {
    st = fail(&w, 0, NULL, "the file is empty");
    goto done;
  }
  st = walk_mapping(&w, root, "", 0, &top_schema, cfg);

done:
  return st;
}
