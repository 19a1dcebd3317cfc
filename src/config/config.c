/*
 * Loading the configuration file (SPEC §6) and answering questions about the
 * result. This file reads the file (capped at FERRY_CONFIG_MAX_BYTES), runs
 * libyaml over it twice (a quick pass over its events that bounds what
 * libyaml is slow at, then its document loader), turns libyaml's errors into
 * messages with the file, line and column, and hands the document to
 * schema.c, which knows what the keys mean. The document API is used because
 * every node keeps its start mark, so a message about any key or value can
 * still name its line after the whole file has been read.
 */
#include "ferry/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "config/lookup.h"
#include "config/path.h"
#include "config/schema.h"

#define CUSTOMER_TOKEN "{customer}"
#define NEST_MAX 64      /* mappings and sequences in each other; a config needs 4 */
#define ANCHORS_MAX 1024 /* "&name"s; a config shares a few settings this way */

/* Reads path whole into *buf (malloc'd, the caller's) and *len. */
static ferry_status read_file(const char *path, char **buf, size_t *len, ferry_error *err) {
  ferry_status st = FERRY_OK;
  char *b = NULL;
  size_t n = 0, cap = 0;
  struct stat sb;
  int fd = open(path, O_RDONLY | O_CLOEXEC);

  if (fd < 0) {
    st = ferry_error_set(err, FERRY_EIO, "%s: cannot open: %s", path, strerror(errno));
    goto done;
  }
  /* open() takes a directory; read() would fail on it with a vaguer story */
  if (fstat(fd, &sb) == 0 && S_ISDIR(sb.st_mode)) {
    st = ferry_error_set(err, FERRY_EIO, "%s: cannot read: %s", path, strerror(EISDIR));
    goto done;
  }
  /* st_size is not trusted: a pipe (--config <(...)) has none */
  for (;;) {
    ssize_t r;
    if (n == cap) {
      /* one byte past the cap tells a file at the cap from one over it */
      size_t ncap = cap ? cap * 2 : 4096;
      char *nb;
      if (ncap > FERRY_CONFIG_MAX_BYTES + 1) ncap = FERRY_CONFIG_MAX_BYTES + 1;
      if (ncap == cap) {
        st = ferry_error_set(err, FERRY_ECONFIG, "%s: larger than %d bytes", path,
                             FERRY_CONFIG_MAX_BYTES);
        goto done;
      }
      nb = realloc(b, ncap);
      if (!nb) {
        st = ferry_error_set(err, FERRY_ENOMEM, "%s: out of memory", path);
        goto done;
      }
      b = nb;
      cap = ncap;
    }
    r = read(fd, b + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      st = ferry_error_set(err, FERRY_EIO, "%s: cannot read: %s", path, strerror(errno));
      goto done;
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  *buf = b;
  *len = n;
  b = NULL;

done:
  free(b);
  if (fd >= 0) close(fd);
  return st;
}

/* The 1-based line holding byte offset of buf. */
static size_t line_at(const char *buf, size_t len, size_t offset) {
  size_t line = 1;
  for (size_t i = 0; i < offset && i < len; i++)
    if (buf[i] == '\n') line++;
  return line;
}

/* Whether line (0-based) of buf is indented with a tab: libyaml then says
 * only that a character "cannot start any token", which few would decode. */
static int tab_indented(const char *buf, size_t len, size_t line) {
  size_t i = 0;
  for (; i < len && line > 0; i++)
    if (buf[i] == '\n') line--;
  for (; i < len && (buf[i] == ' ' || buf[i] == '\t'); i++)
    if (buf[i] == '\t') return 1;
  return 0;
}

/* Turns the error libyaml stopped with into ours. */
static ferry_status yaml_failed(const yaml_parser_t *p, const char *name, const char *buf,
                                size_t len, ferry_error *err) {
  ferry_status st = FERRY_ECONFIG;
  const char *problem = p->problem ? p->problem : "cannot parse";
  const char *hint = p->error == YAML_SCANNER_ERROR && tab_indented(buf, len, p->problem_mark.line)
                         ? "; indent with spaces, not tabs"
                         : "";

  switch (p->error) {
  case YAML_NO_ERROR: /* libyaml fails a few allocations (a node's default tag) without a word */
  case YAML_MEMORY_ERROR: st = ferry_error_set(err, FERRY_ENOMEM, "%s: out of memory", name); break;
  case YAML_READER_ERROR:
    /* bad encoding: libyaml knows the byte, not the line */
    st = ferry_error_set(err, FERRY_ECONFIG, "%s:%zu: invalid text at byte %zu: %s", name,
                         line_at(buf, len, p->problem_offset), p->problem_offset, problem);
    break;
  default:
    if (p->context)
      st = ferry_error_set(err, FERRY_ECONFIG,
                           "%s:%zu:%zu: YAML syntax error: %s (%s at line %zu, column %zu)%s", name,
                           p->problem_mark.line + 1, p->problem_mark.column + 1, problem,
                           p->context, p->context_mark.line + 1, p->context_mark.column + 1, hint);
    else
      st = ferry_error_set(err, FERRY_ECONFIG, "%s:%zu:%zu: YAML syntax error: %s%s", name,
                           p->problem_mark.line + 1, p->problem_mark.column + 1, problem, hint);
    break;
  }
  return st;
}

/* The anchor an event defines, or NULL. */
static const unsigned char *anchor_of(const yaml_event_t *ev) {
  switch (ev->type) {
  case YAML_SCALAR_EVENT: return ev->data.scalar.anchor;
  case YAML_SEQUENCE_START_EVENT: return ev->data.sequence_start.anchor;
  case YAML_MAPPING_START_EVENT: return ev->data.mapping_start.anchor;
  default: return NULL;
  }
}

/* A first pass over libyaml's events that stops at the first syntax error, at
 * nesting deeper than NEST_MAX, or at more than ANCHORS_MAX anchors. libyaml
 * takes time in the square of both (it rechecks every open level at each
 * token, and every anchor at each new one): a 1 MiB file of "[" or of "&a"
 * would keep the document loader busy for minutes. */
static ferry_status prescan(const char *name, const char *buf, size_t len, ferry_error *err) {
  ferry_status st = FERRY_OK;
  yaml_parser_t parser;
  int have_parser = 0, depth = 0, anchors = 0, end = 0;

  if (!yaml_parser_initialize(&parser)) {
    st = ferry_error_set(err, FERRY_ENOMEM, "%s: out of memory", name);
    goto done;
  }
  have_parser = 1;
  yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
  while (!end && !st) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) {
      st = yaml_failed(&parser, name, buf, len, err);
      break;
    }
    if (ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT) depth++;
    if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT) depth--;
    anchors += anchor_of(&ev) != NULL;
    end = ev.type == YAML_STREAM_END_EVENT;
    if (depth > NEST_MAX)
      st = ferry_error_set(err, FERRY_ECONFIG, "%s:%zu: nested deeper than %d levels", name,
                           ev.start_mark.line + 1, NEST_MAX);
    else if (anchors > ANCHORS_MAX)
      st = ferry_error_set(err, FERRY_ECONFIG, "%s:%zu: more than %d anchors", name,
                           ev.start_mark.line + 1, ANCHORS_MAX);
    yaml_event_delete(&ev);
  }

done:
  if (have_parser) yaml_parser_delete(&parser);
  return st;
}

ferry_status ferry_config_load_buffer(ferry_config **out, const char *name, const char *buf,
                                      size_t len, ferry_error *err) {
  ferry_status st = FERRY_OK;
  ferry_config *cfg = NULL;
  char *dir = NULL;
  yaml_parser_t parser;
  yaml_document_t doc, rest;
  int have_parser = 0, have_doc = 0, have_rest = 0;

  *out = NULL;
  if (!buf) { /* libyaml asserts on a NULL input even when it is empty */
    buf = "";
    len = 0;
  }
  if (len > FERRY_CONFIG_MAX_BYTES) {
    st = ferry_error_set(err, FERRY_ECONFIG, "%s: larger than %d bytes", name,
                         FERRY_CONFIG_MAX_BYTES);
    goto done;
  }
  st = prescan(name, buf, len, err);
  if (st) goto done;
  cfg = calloc(1, sizeof *cfg);
  if (!cfg) {
    st = ferry_error_set(err, FERRY_ENOMEM, "%s: out of memory", name);
    goto done;
  }
  st = ferry_config_path_dir(name, &dir, &cfg->path, err);
  if (st) goto done;
  if (!yaml_parser_initialize(&parser)) {
    st = ferry_error_set(err, FERRY_ENOMEM, "%s: out of memory", name);
    goto done;
  }
  have_parser = 1;
  yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
  if (!yaml_parser_load(&parser, &doc)) {
    st = yaml_failed(&parser, name, buf, len, err);
    goto done;
  }
  have_doc = 1;
  /* a second document would be ignored without a word: read on to refuse it */
  if (!yaml_parser_load(&parser, &rest)) {
    st = yaml_failed(&parser, name, buf, len, err);
    goto done;
  }
  have_rest = 1;
  if (yaml_document_get_root_node(&rest)) {
    st = ferry_error_set(err, FERRY_ECONFIG, "%s:%zu: only one YAML document is allowed", name,
                         rest.start_mark.line + 1);
    goto done;
  }
  st = ferry_config_schema_apply(cfg, &doc, yaml_document_get_root_node(&doc), name, dir, err);
  if (st) goto done;
  if (ferry_config_lookup_index_customers(cfg)) {
    st = ferry_error_set(err, FERRY_ENOMEM, "%s: out of memory", name);
    goto done;
  }
  *out = cfg;
  cfg = NULL;

done:
  if (have_rest) yaml_document_delete(&rest);
  if (have_doc) yaml_document_delete(&doc);
  if (have_parser) yaml_parser_delete(&parser);
  free(dir);
  ferry_config_free(cfg);
  return st;
}

ferry_status ferry_config_load(ferry_config **out, const char *path, ferry_error *err) {
  ferry_status st = FERRY_OK;
  char *buf = NULL;
  size_t len = 0;

  *out = NULL;
  st = read_file(path, &buf, &len, err);
  if (st) goto done;
  st = ferry_config_load_buffer(out, path, buf, len, err);

done:
  free(buf);
  return st;
}

void ferry_config_free(ferry_config *cfg) {
  if (!cfg) return;
  ferry_config_lookup_free(cfg->lookup);
  for (size_t i = 0; i < cfg->ncustomers; i++) {
    ferry_customer_config *c = &cfg->customers[i];
    free(c->feed_url);
    free(c->ingest_token_env);
    free(c->token_env);
    free(c->base_url);
    free(c->id);
  }
  free(cfg->customers);
  free(cfg->service.admin_token_env);
  free(cfg->service.listen);
  free(cfg->cloud.external_key_field);
  free(cfg->cloud.id_field);
  free(cfg->cloud.token_env);
  free(cfg->cloud.base_url);
  free(cfg->data);
  free(cfg->mapping);
  free(cfg->path);
  free(cfg);
}

const ferry_customer_config *ferry_config_customer(const ferry_config *cfg, const char *customer) {
  const ferry_customer_config *found = NULL;
  if (!cfg || !customer) return NULL;
  if (ferry_config_lookup_customer(cfg, customer, &found)) return found;
  /* built by hand: no index, and likely a short list */
  for (size_t i = 0; i < cfg->ncustomers; i++)
    if (cfg->customers[i].id && strcmp(cfg->customers[i].id, customer) == 0)
      return &cfg->customers[i];
  return NULL;
}

char *ferry_config_base_url(const ferry_config *cfg, const char *customer) {
  const size_t toklen = sizeof CUSTOMER_TOKEN - 1;
  const ferry_customer_config *c;
  const char *base, *p, *hit;
  size_t idlen, count = 0;
  char *out = NULL, *o;

  if (!cfg || !ferry_customer_valid(customer)) goto done;
  c = ferry_config_customer(cfg, customer);
  base = c && c->base_url ? c->base_url : cfg->cloud.base_url;
  if (!base) goto done;
  idlen = strlen(customer);
  for (p = base; (hit = strstr(p, CUSTOMER_TOKEN)); p = hit + toklen)
    count++;
  /* ids are at most FERRY_CUSTOMER_MAX bytes: the size cannot wrap */
  out = malloc(strlen(base) - count * toklen + count * idlen + 1);
  if (!out) goto done;
  o = out;
  for (p = base; (hit = strstr(p, CUSTOMER_TOKEN)); p = hit + toklen) {
    memcpy(o, p, (size_t)(hit - p));
    o += hit - p;
    memcpy(o, customer, idlen);
    o += idlen;
  }
  strcpy(o, p);

done:
  return out;
}

const char *ferry_config_token_env(const ferry_config *cfg, const char *customer) {
  const ferry_customer_config *c = ferry_config_customer(cfg, customer);
  if (c && c->token_env) return c->token_env;
  return cfg ? cfg->cloud.token_env : NULL;
}

size_t ferry_config_line(const ferry_config *cfg, const char *key) {
  return cfg ? ferry_config_lookup_line(cfg->lookup, key) : 0;
}

const char *ferry_config_secret(const char *env_name) {
  const char *v;
  if (!env_name || !*env_name) return NULL;
  v = getenv(env_name);
  return v && *v ? v : NULL;
}
