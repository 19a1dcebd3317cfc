/*
 * The configuration file (SPEC §6): YAML, loaded with libyaml. Relative paths
 * in it are resolved against the file's folder. Secrets are never in the file:
 * it names environment variables, read when needed (ferry_config_secret).
 */
#ifndef FERRY_CONFIG_H
#define FERRY_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/ferry.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ferry_customer_config {
  char *id;
  char *base_url;         /* NULL: the global cloud.base_url */
  char *token_env;        /* NULL: the global cloud.token_env */
  char *ingest_token_env; /* NULL: no ingest token (admin token only) */
  char *feed_url;         /* NULL: push only */
} ferry_customer_config;

typedef struct ferry_config {
  char *path;             /* the file it was loaded from (absolute) */
  char *mapping;          /* absolute path of the mapping file */
  char *data;             /* absolute data dir; NULL if the file does not set it */
  struct {
    char *base_url;       /* may contain "{customer}" */
    char *token_env;      /* NULL: no token */
    char *id_field;       /* default "id" */
    char *external_key_field; /* default "legacy_key" */
    int concurrency;      /* default 16 */
    int timeout_ms;       /* default 10000 */
    int max_attempts;     /* default 8 */
    double rate_limit;    /* calls/s per customer; 0: unlimited */
  } cloud;
  struct {
    char *listen;         /* default "127.0.0.1:8470" */
    char *admin_token_env; /* default "FERRY_ADMIN_TOKEN" */
    uint64_t max_batch_bytes; /* default 67108864 */
  } service;
  ferry_customer_config *customers;
  size_t ncustomers;
  /* Private to the loader: the line of each key (ferry_config_line) and an
   * index of the customers. NULL in a config built by hand, which the
   * functions below accept all the same. */
  struct ferry_config_lookup *lookup;
} ferry_config;

/* The largest configuration file accepted, in bytes. */
#define FERRY_CONFIG_MAX_BYTES (1024 * 1024)

/* Loads and validates path. Errors name the file, line and key
 * ("ferry.yaml:7: cloud.concurrency: expected an integer, got \"many\""). */
ferry_status ferry_config_load(ferry_config **out, const char *path, ferry_error *err);

/* As ferry_config_load, for a file already in memory (len bytes of buf, which
 * need not be NUL-terminated). name stands for the file: messages name it, and
 * relative paths resolve against its folder, which must exist. On success
 * *out is the caller's, to free with ferry_config_free; on failure it is NULL
 * and err says why: FERRY_ECONFIG (invalid), FERRY_EIO (name's folder cannot
 * be resolved) or FERRY_ENOMEM. */
ferry_status ferry_config_load_buffer(ferry_config **out, const char *name, const char *buf,
                                      size_t len, ferry_error *err);

/* Frees cfg and everything it owns; accepts NULL and half-built configs. */
void ferry_config_free(ferry_config *cfg);

/* The customer's overrides, or NULL. */
const ferry_customer_config *ferry_config_customer(const ferry_config *cfg, const char *customer);

/* The customer's cloud base URL (its override, else cloud.base_url) with every
 * "{customer}" replaced by the id; malloc'd, the caller frees it. NULL when out
 * of memory or when customer is not a valid id (ferry_customer_valid), so that
 * no id can smuggle "/" or "?" into a URL. */
char *ferry_config_base_url(const ferry_config *cfg, const char *customer);

/* The name of the variable holding the customer's cloud token: its override,
 * else cloud.token_env; NULL when neither is set. Owned by cfg. */
const char *ferry_config_token_env(const ferry_config *cfg, const char *customer);

/* The 1-based line of key in the file cfg was loaded from, or 0 when the file
 * does not set it. key is a dotted path: "mapping", "cloud.concurrency",
 * "customers.acme.feed_url". Lets later checks (a mapping file that will not
 * open, say) point at the line to fix. */
size_t ferry_config_line(const ferry_config *cfg, const char *key);

/* The value of the environment variable named by env_name, or NULL. Never logged. */
const char *ferry_config_secret(const char *env_name);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_CONFIG_H */
