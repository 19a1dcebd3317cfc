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
#include "ferry/mapping.h"
#include "ferry/projector.h"

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
  const cli_env *env;
  ferry_store *store;
  ferry_mapping *mapping; /* with --config: projection state too */
  json_t *arr;
  ferry_error err;
  int failed;
  bool single; /* one customer: list its failed entities too */
} list_ctx;

static int add_failed(void *arg, const char *entity, const char *key, int status, const char *error) {
  json_array_append_new(arg, json_pack("{s:s, s:s, s:i, s:s}", "entity", entity, "key", key,
                                       "status", status, "error", error));
  return 0;
}

/* Adds the projection's state to o (needs the mapping). */
static int add_projection(list_ctx *c, const char *customer, json_t *o, bool details) {
  ferry_projector *p = NULL;
  ferry_projection_info info;
  ferry_projector_opts opts = {c->env->cfg->cloud.id_field, c->env->cfg->cloud.external_key_field, 0};
  if (ferry_projector_open(&p, c->store, c->mapping, customer, &opts, true, &c->err) ||
      ferry_projector_info(p, &info, &c->err)) {
    ferry_projector_close(p);
    return 1;
  }
  char when[32] = "";
  if (info.last_sync_us) ferry_time_format(info.last_sync_us, when);
  json_object_set_new(o, "projected_seq", json_integer((json_int_t)info.folded_seq));
  json_object_set_new(o, "held", json_boolean(info.held));
  if (info.held) json_object_set_new(o, "hold_seq", json_integer((json_int_t)info.hold_seq));
  json_object_set_new(o, "pending", json_integer((json_int_t)info.dirty));
  json_object_set_new(o, "failed", json_integer((json_int_t)info.failed));
  json_object_set_new(o, "mapping_changed", json_boolean(info.mapping_changed));
  json_object_set_new(o, "last_sync", info.last_sync_us ? json_string(when) : json_null());
  json_object_set_new(o, "last_sync_result", json_string(info.last_sync_result));
  json_object_set_new(o, "restored", json_boolean(info.restored));
  if (details) {
    json_t *f = json_array();
    ferry_projector_failed(p, add_failed, f, &c->err);
    json_object_set_new(o, "failed_entities", f);
  }
  ferry_projector_close(p);
  return 0;
}

static int add_customer(void *arg, const char *customer) {
  list_ctx *c = arg;
  uint64_t head = 0;
  if (ferry_store_head_seq(c->store, customer, &head, &c->err)) {
    c->failed = 1;
    return 1;
  }
  json_t *o = json_pack("{s:s, s:I}", "customer", customer, "head_seq", (json_int_t)head);
  if (c->mapping && add_projection(c, customer, o, c->single)) {
    json_decref(o);
    c->failed = 1;
    return 1;
  }
  json_array_append_new(c->arr, o);
  return 0;
}

/* Fills c->arr with each customer's state, for one customer or all. */
static int collect_customers(cli_env *env, const char *only, list_ctx *c) {
  int rc = cli_open_store(env, FERRY_STORE_READ, &c->store);
  if (rc) return rc;
  ferry_error_clear(&c->err);
  c->env = env;
  c->arr = json_array();
  if (env->cfg && ferry_mapping_load(&c->mapping, env->cfg->mapping, &c->err)) return cli_fail(&c->err);
  c->single = only != NULL;
  if (only) add_customer(c, only);
  else if (ferry_store_customers(c->store, add_customer, c, &c->err)) c->failed = 1;
  if (c->failed) return cli_fail(&c->err);
  return 0;
}

static void print_one(json_t *o) {
  json_t *v;
  printf("customer        %s\n", json_string_value(json_object_get(o, "customer")));
  printf("head seq        %" JSON_INTEGER_FORMAT "\n", json_integer_value(json_object_get(o, "head_seq")));
  if (!json_object_get(o, "projected_seq")) return;
  printf("projected seq   %" JSON_INTEGER_FORMAT "%s\n", json_integer_value(json_object_get(o, "projected_seq")),
         json_is_true(json_object_get(o, "held")) ? "  (held: 'ferry resume' lifts it)" : "");
  printf("pending         %" JSON_INTEGER_FORMAT " entities\n", json_integer_value(json_object_get(o, "pending")));
  printf("failed          %" JSON_INTEGER_FORMAT " entities\n", json_integer_value(json_object_get(o, "failed")));
  if (json_is_true(json_object_get(o, "mapping_changed")))
    printf("mapping         changed since the last projection: run 'ferry replay'\n");
  if (json_is_true(json_object_get(o, "restored")))
    printf("restored        from a backup: creates look their record up first until a sync ends clean\n");
  v = json_object_get(o, "last_sync");
  printf("last sync       %s%s%s\n", json_is_string(v) ? json_string_value(v) : "never",
         json_is_string(v) ? "  " : "", json_string_value(json_object_get(o, "last_sync_result")));
  size_t i;
  json_t *f;
  json_array_foreach(json_object_get(o, "failed_entities"), i, f)
    printf("  failed %s/%s: %s\n", json_string_value(json_object_get(f, "entity")),
           json_string_value(json_object_get(f, "key")), json_string_value(json_object_get(f, "error")));
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
  if (single) {
    print_one(json_array_get(arr, 0));
    return 0;
  }
  bool proj = json_array_size(arr) && json_object_get(json_array_get(arr, 0), "projected_seq");
  printf("%-32s %10s%s\n", "CUSTOMER", "HEAD SEQ", proj ? "  PROJECTED    PENDING     FAILED" : "");
  json_array_foreach(arr, i, o) {
    printf("%-32s %10" JSON_INTEGER_FORMAT, json_string_value(json_object_get(o, "customer")),
           json_integer_value(json_object_get(o, "head_seq")));
    if (proj)
      printf(" %10" JSON_INTEGER_FORMAT " %10" JSON_INTEGER_FORMAT " %10" JSON_INTEGER_FORMAT,
             json_integer_value(json_object_get(o, "projected_seq")),
             json_integer_value(json_object_get(o, "pending")),
             json_integer_value(json_object_get(o, "failed")));
    printf("\n");
  }
  return 0;
}

static void list_free(list_ctx *c) {
  json_decref(c->arr);
  ferry_mapping_free(c->mapping);
  ferry_store_close(c->store);
}

int cli_cmd_customers(cli_env *env, const cli_args *a) {
  list_ctx c = {NULL, NULL, NULL, NULL, {0, {0}}, 0, false};
  cli_env plain = *env;
  plain.cfg = NULL; /* customers lists logs only */
  int rc = collect_customers(&plain, NULL, &c);
  if (!rc) rc = print_customers(a, c.arr, false);
  list_free(&c);
  return rc;
}

int cli_cmd_status(cli_env *env, const cli_args *a) {
  const char *customer = a->npos ? a->pos[0] : NULL;
  if (customer && !cli_check_customer(customer)) return 2;
  list_ctx c = {NULL, NULL, NULL, NULL, {0, {0}}, 0, false};
  int rc = collect_customers(env, customer, &c);
  if (!rc) rc = print_customers(a, c.arr, customer != NULL);
  list_free(&c);
  return rc;
}
