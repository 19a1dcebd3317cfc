/*
 * What a loaded configuration keeps besides its public fields, for answering
 * questions about it: the line each key stood on (so checks made after
 * loading can still point at the line to fix), and the customers sorted by
 * id (so ferry_config_customer need not scan them all). It hangs off
 * ferry_config.lookup; a config built by hand has none, and the questions are
 * then answered the slow way or not at all.
 */
#ifndef FERRY_CONFIG_LOOKUP_H
#define FERRY_CONFIG_LOOKUP_H

#include <stddef.h>

#include "ferry/config.h"

/* Records that key (copied) stood on line; creates cfg->lookup on first use.
 * FERRY_ENOMEM when out of memory. */
ferry_status ferry_config_lookup_add_key(ferry_config *cfg, const char *key, size_t line);

/* The line recorded for key, or 0. lookup may be NULL. */
size_t ferry_config_lookup_line(const struct ferry_config_lookup *lookup, const char *key);

/* Indexes cfg->customers, which must not change afterwards, by id.
 * FERRY_ENOMEM when out of memory. */
ferry_status ferry_config_lookup_index_customers(ferry_config *cfg);

/* Finds customer through the index. Sets *found (NULL: no such customer) and
 * returns 1, or returns 0 when there is no index to search. */
int ferry_config_lookup_customer(const ferry_config *cfg, const char *customer,
                                 const ferry_customer_config **found);

/* Frees lookup and all it holds; accepts NULL. */
void ferry_config_lookup_free(struct ferry_config_lookup *lookup);

#endif /* FERRY_CONFIG_LOOKUP_H */
