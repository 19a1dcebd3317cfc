/*
 * The shape of the configuration file (SPEC §6, plus cloud.rate_limit) and
 * the walk that checks a parsed YAML document against it while filling a
 * ferry_config. Kept apart from config.c, which reads the file and runs
 * libyaml, so that what the file may say is in one place.
 */
#ifndef FERRY_CONFIG_SCHEMA_H
#define FERRY_CONFIG_SCHEMA_H

#include <yaml.h>

#include "ferry/config.h"

/* Fills cfg, which must be zeroed but for cfg->path, from root (the root node
 * of doc, NULL for an empty file): defaults first, then what the file sets.
 * name is the file as messages call it; dir the absolute folder relative
 * paths resolve against. FERRY_ECONFIG with "name:line: key.path: problem" in
 * err, or FERRY_ENOMEM; on failure cfg is half-built, for ferry_config_free. */
ferry_status ferry_config_schema_apply(ferry_config *cfg, yaml_document_t *doc, yaml_node_t *root,
                                       const char *name, const char *dir, ferry_error *err);

#endif /* FERRY_CONFIG_SCHEMA_H */
