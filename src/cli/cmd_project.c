/*
 * Projection commands: plan (fold, then show the calls a sync would make),
 * rewind, resume and replay.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "ferry/json.h"
#include "ferry/mapping.h"
#include "ferry/projector.h"

static const char *kind_name(ferry_call_kind k) {
  switch (k) {
  case FERRY_CALL_NONE: return "none";
  case FERRY_CALL_CREATE: return "create";
  case FERRY_CALL_PATCH: return "patch";
  case FERRY_CALL_DELETE: return "delete";
  case FERRY_CALL_WAIT: return "wait";
  }
  return "none";
}

static const char *method_of(ferry_call_kind k) {
  return k == FERRY_CALL_CREATE ? "POST" : k == FERRY_CALL_PATCH ? "PATCH"
                                         : k == FERRY_CALL_DELETE ? "DELETE" : "";
}

static void warn_unseen(cli_project *cp, const char *customer) {
  char **t = NULL;
  size_t n = 0;
  ferry_error err;
  if (ferry_projector_unseen_tables(cp->proj, &t, &n, &err) == FERRY_OK)
    for (size_t i = 0; i < n; i++)
      fprintf(stderr, "ferry: warning: the mapping names table %s, which %s's log has never "
                      "mentioned (a typo, or no rows yet?)\n", t[i], customer);
  for (size_t i = 0; t && i < n; i++) free(t[i]);
  free(t);
}

typedef struct plan_out {
  json_t *calls;
  uint64_t counts[5];
} plan_out;

static json_t *call_json(const ferry_call *c) {
  json_t *o = json_pack("{s:s, s:s, s:s}", "op", kind_name(c->kind), "entity", c->entity, "key", c->key);
  if (!o) return NULL;
  if (c->kind != FERRY_CALL_NONE && c->kind != FERRY_CALL_WAIT) {
    char path[2048];
    snprintf(path, sizeof path, "%s%s%s", c->endpoint, c->cloud_id ? "/" : "",
             c->cloud_id ? c->cloud_id : "");
    json_object_set_new(o, "method", json_string(method_of(c->kind)));
    json_object_set_new(o, "path", json_string(path));
  }
  if (c->cloud_id) json_object_set_new(o, "cloud_id", json_loads(c->cloud_id, JSON_DECODE_ANY, NULL));
  if (c->body) json_object_set(o, "body", c->body);
  if (c->waits_for) json_object_set_new(o, "waits_for", json_string(c->waits_for));
  json_t *f = json_array(), *s = json_array();
  for (size_t i = 0; i < c->nfields; i++) json_array_append_new(f, json_string(c->fields[i]));
  for (size_t i = 0; i < c->nseqs; i++) json_array_append_new(s, json_integer((json_int_t)c->seqs[i]));
  if (c->kind == FERRY_CALL_PATCH || c->kind == FERRY_CALL_CREATE) json_object_set_new(o, "fields", f);
  else json_decref(f);
  json_object_set_new(o, "seqs", s);
  return o;
}

static int collect_call(void *arg, const ferry_call *c) {
  plan_out *po = arg;
  po->counts[c->kind]++;
  if (c->kind == FERRY_CALL_NONE) return 0;
  json_array_append_new(po->calls, call_json(c));
  return 0;
}

static void print_plan_text(const char *customer, const plan_out *po) {
  size_t i;
  json_t *c;
  printf("plan for %s: %" PRIu64 " create, %" PRIu64 " patch, %" PRIu64 " delete", customer,
         po->counts[FERRY_CALL_CREATE], po->counts[FERRY_CALL_PATCH], po->counts[FERRY_CALL_DELETE]);
  if (po->counts[FERRY_CALL_WAIT]) printf(", %" PRIu64 " waiting", po->counts[FERRY_CALL_WAIT]);
  printf("\n");
  json_array_foreach(po->calls, i, c) {
    const char *op = json_string_value(json_object_get(c, "op"));
    char *body = json_object_get(c, "body") ? ferry_json_dump(json_object_get(c, "body"), FERRY_JSON_SORTED) : NULL;
    char *seqs = ferry_json_dump(json_object_get(c, "seqs"), 0);
    printf("  %-6s %s/%s", op, json_string_value(json_object_get(c, "entity")),
           json_string_value(json_object_get(c, "key")));
    if (json_object_get(c, "method"))
      printf("  %s %s", json_string_value(json_object_get(c, "method")),
             json_string_value(json_object_get(c, "path")));
    if (body) printf("  %s", body);
    if (json_object_get(c, "waits_for"))
      printf("  waits for %s", json_string_value(json_object_get(c, "waits_for")));
    if (seqs && strcmp(seqs, "[]") != 0) { /* [1,2] -> events 1,2 */
      seqs[strlen(seqs) - 1] = '\0';
      printf("  (events %s)", seqs + 1);
    }
    printf("\n");
    free(body);
    free(seqs);
  }
}

int cli_cmd_plan(cli_env *env, const cli_args *a) {
  const char *customer = a->pos[0];
  cli_project cp;
  ferry_error err;
  plan_out po = {json_array(), {0}};
  int rc = cli_project_open(env, customer, CLI_PROJECT_WORK, &cp);
  if (rc) goto done;
  if ((rc = cli_project_fold(&cp))) goto done;
  warn_unseen(&cp, customer);
  if (ferry_projector_plan(cp.proj, collect_call, &po, &err)) { rc = cli_fail(&err); goto done; }
  if (cli_flag(a, "json")) {
    json_t *o = json_pack("{s:s, s:O, s:{s:I, s:I, s:I, s:I}}", "customer", customer, "calls",
                          po.calls, "summary", "create", (json_int_t)po.counts[FERRY_CALL_CREATE],
                          "patch", (json_int_t)po.counts[FERRY_CALL_PATCH], "delete",
                          (json_int_t)po.counts[FERRY_CALL_DELETE], "wait",
                          (json_int_t)po.counts[FERRY_CALL_WAIT]);
    char *s = ferry_json_dump(o, 0);
    puts(s ? s : "{}");
    free(s);
    json_decref(o);
  } else {
    print_plan_text(customer, &po);
  }
done:
  json_decref(po.calls);
  cli_project_close(&cp);
  return rc;
}

int cli_cmd_rewind(cli_env *env, const cli_args *a) {
  const char *customer = a->pos[0];
  uint64_t to = 0;
  if (!cli_arg(a, "to-seq")) return cli_failf(FERRY_EINVAL, "rewind needs --to-seq N");
  if (!cli_parse_u64("to-seq", cli_arg(a, "to-seq"), &to)) return 2;
  cli_project cp;
  ferry_error err;
  cli_progress pr;
  int rc = cli_project_open(env, customer, CLI_PROJECT_REBUILD, &cp);
  if (rc) return rc;
  cli_progress_init(&pr, "refolded", "events");
  ferry_status st = ferry_projector_rewind(cp.proj, to, cli_flag(a, "hold"), cli_progress_update, &pr, &err);
  cli_progress_end(&pr);
  if (st) rc = cli_fail(&err);
  else if (cli_flag(a, "hold"))
    printf("rewound %s to seq %" PRIu64 " and holding there: the next sync rolls the cloud back "
           "to that state; 'ferry resume %s' lifts the hold\n", customer, to, customer);
  else
    printf("rewound %s to seq %" PRIu64 ": the next plan or sync replays the events after it\n",
           customer, to);
  cli_project_close(&cp);
  return rc;
}

int cli_cmd_resume(cli_env *env, const cli_args *a) {
  cli_project cp;
  ferry_error err;
  int rc = cli_project_open(env, a->pos[0], CLI_PROJECT_REBUILD, &cp);
  if (rc) return rc;
  if (ferry_projector_resume(cp.proj, &err)) rc = cli_fail(&err);
  else printf("resumed %s: the next plan or sync folds the events after the hold\n", a->pos[0]);
  cli_project_close(&cp);
  return rc;
}

int cli_cmd_replay(cli_env *env, const cli_args *a) {
  cli_project cp;
  ferry_error err;
  cli_progress pr;
  int rc = cli_project_open(env, a->pos[0], CLI_PROJECT_REBUILD, &cp);
  if (rc) return rc;
  cli_progress_init(&pr, "replayed", "events");
  ferry_status st = ferry_projector_replay(cp.proj, cli_progress_update, &pr, &err);
  cli_progress_end(&pr);
  if (st) {
    rc = cli_fail(&err);
  } else {
    ferry_projection_info info;
    if (ferry_projector_info(cp.proj, &info, &err) == FERRY_OK)
      printf("replayed %s: %" PRIu64 " events with mapping %.12s; %" PRIu64
             " entities differ from the cloud (see 'ferry plan %s')\n",
             a->pos[0], info.folded_seq, info.mapping_hash, info.dirty, a->pos[0]);
  }
  cli_project_close(&cp);
  return rc;
}
