/*
 * Read-only commands: log, customers, status. They open the store read-only,
 * so they also work while ferryd holds the data directory.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "ferry/event.h"
#include "ferry/json.h"

int cli_cmd_log(cli_env *env, const cli_args *a) {
  const char *customer = a->pos[0];
  uint64_t from = 1, limit = UINT64_MAX, n = 0;
  ferry_store *store = NULL;
  ferry_log_iter *it = NULL;
  ferry_error err;
  int rc = 0;

  ferry_error_clear(&err);
  if (!cli_check_customer(customer)) return 2;
  if (cli_arg(a, "from-seq") && !cli_parse_u64("from-seq", cli_arg(a, "from-seq"), &from)) return 2;
  if (cli_arg(a, "limit") && !cli_parse_u64("limit", cli_arg(a, "limit"), &limit)) return 2;
  if ((rc = cli_open_store(env, FERRY_STORE_READ, &store))) goto done;
  if (ferry_log_iter_open(store, customer, from ? from : 1, &it, &err)) { rc = cli_fail(&err); goto done; }

  uint64_t seq;
  const uint8_t *ev;
  size_t len;
  int more;
  while (n < limit && (more = ferry_log_iter_next(it, &seq, &ev, &len)) == 1) {
    json_t *o = NULL;
    if (ferry_event_to_json(ev, len, &o, &err)) {
      rc = cli_failf(err.code, "event %" PRIu64 ": %s", seq, err.msg);
      goto done;
    }
    char *s = ferry_json_dump(o, 0);
    json_decref(o);
    if (!s) { rc = cli_failf(FERRY_ENOMEM, "out of memory"); goto done; }
    fputs(s, stdout);
    fputc('\n', stdout);
    free(s);
    n++;
  }
  if (n < limit && more < 0) {
    ferry_log_iter_error(it, &err);
    rc = cli_fail(&err);
  }
done:
  ferry_log_iter_close(it);
  ferry_store_close(store);
  return rc;
}

typedef struct list_ctx {
  ferry_store *store;
  json_t *arr;
  ferry_error err;
  int failed;
} list_ctx;

static int add_customer(void *arg, const char *customer) {
  list_ctx *c = arg;
  uint64_t head = 0;
  if (ferry_store_head_seq(c->store, customer, &head, &c->err)) {
    c->failed = 1;
    return 1;
  }
  json_array_append_new(c->arr, json_pack("{s:s, s:I}", "customer", customer, "head_seq",
                                          (json_int_t)head));
  return 0;
}

/* Fills c->arr with {customer, head_seq} for one customer or all. */
static int collect_customers(cli_env *env, const char *only, list_ctx *c) {
  int rc = cli_open_store(env, FERRY_STORE_READ, &c->store);
  if (rc) return rc;
  ferry_error_clear(&c->err);
  c->arr = json_array();
  if (only) add_customer(c, only);
  else if (ferry_store_customers(c->store, add_customer, c, &c->err)) c->failed = 1;
  if (c->failed) return cli_fail(&c->err);
  return 0;
}

static int print_customers(const cli_args *a, json_t *arr, bool single) {
  if (cli_flag(a, "json")) {
    char *s = ferry_json_dump(single ? json_array_get(arr, 0) : arr, 0);
    if (!s) return cli_failf(FERRY_ENOMEM, "out of memory");
    puts(s);
    free(s);
    return 0;
  }
  size_t i;
  json_t *o;
  if (!single) printf("%-32s %s\n", "CUSTOMER", "HEAD SEQ");
  json_array_foreach(arr, i, o) {
    const char *c = json_string_value(json_object_get(o, "customer"));
    json_int_t head = json_integer_value(json_object_get(o, "head_seq"));
    if (single) printf("customer  %s\nhead seq  %" JSON_INTEGER_FORMAT "\n", c, head);
    else printf("%-32s %" JSON_INTEGER_FORMAT "\n", c, head);
  }
  return 0;
}

int cli_cmd_customers(cli_env *env, const cli_args *a) {
  list_ctx c = {NULL, NULL, {0, {0}}, 0};
  int rc = collect_customers(env, NULL, &c);
  if (!rc) rc = print_customers(a, c.arr, false);
  json_decref(c.arr);
  ferry_store_close(c.store);
  return rc;
}

int cli_cmd_status(cli_env *env, const cli_args *a) {
  const char *customer = a->npos ? a->pos[0] : NULL;
  if (customer && !cli_check_customer(customer)) return 2;
  list_ctx c = {NULL, NULL, {0, {0}}, 0};
  int rc = collect_customers(env, customer, &c);
  if (!rc) rc = print_customers(a, c.arr, customer != NULL);
  json_decref(c.arr);
  ferry_store_close(c.store);
  return rc;
}
