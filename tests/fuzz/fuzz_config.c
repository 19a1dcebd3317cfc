/*
 * Fuzz target for the configuration loader: any bytes go through libyaml and
 * the schema walk via ferry_config_load_buffer. A config that loads must hold
 * what the loader promises (the required keys, absolute paths, valid customer
 * ids, the defaults' bounds), and every lookup on it must work; a config that
 * does not load must say why. Anything else traps.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/config.h"

#define CHECK(x)                                                                                   \
  do {                                                                                             \
    if (!(x)) __builtin_trap();                                                                    \
  } while (0)

static void check_loaded(const ferry_config *cfg) {
  CHECK(cfg->path && cfg->path[0] == '/');
  CHECK(cfg->mapping && cfg->mapping[0] == '/');
  CHECK(!cfg->data || cfg->data[0] == '/');
  CHECK(cfg->cloud.base_url && cfg->cloud.id_field && cfg->cloud.external_key_field);
  CHECK(cfg->cloud.concurrency >= 1 && cfg->cloud.concurrency <= 1024);
  CHECK(cfg->cloud.timeout_ms >= 1 && cfg->cloud.max_attempts >= 1);
  CHECK(cfg->cloud.rate_limit >= 0);
  CHECK(cfg->service.listen && cfg->service.admin_token_env && cfg->service.max_batch_bytes >= 1);
  CHECK(ferry_config_line(cfg, "mapping") >= 1);
  for (size_t i = 0; i < cfg->ncustomers; i++) {
    const ferry_customer_config *c = &cfg->customers[i];
    char *url;
    CHECK(ferry_customer_valid(c->id));
    CHECK(ferry_config_customer(cfg, c->id) == c); /* ids are unique */
    url = ferry_config_base_url(cfg, c->id);
    CHECK(url && !strstr(url, "{customer}"));
    free(url);
    CHECK(ferry_config_token_env(cfg, c->id) || !c->token_env);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ferry_config *cfg = NULL;
  ferry_error err;
  ferry_status st;

  ferry_error_clear(&err);
  st = ferry_config_load_buffer(&cfg, "fuzz.yaml", (const char *)data, size, &err);
  if (st == FERRY_OK) {
    CHECK(cfg);
    check_loaded(cfg);
  } else {
    CHECK(!cfg);
    CHECK(st == FERRY_ECONFIG || st == FERRY_ENOMEM);
    CHECK(err.code == st && strncmp(err.msg, "fuzz.yaml", 9) == 0);
  }
  ferry_config_free(cfg);
  return 0;
}
