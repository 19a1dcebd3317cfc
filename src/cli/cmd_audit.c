/*
 * The auditor's commands: history (every cloud call, when, its result, the
 * fields it changed and the events that caused it) and explain (an entity's
 * desired and applied state and the legacy rows it was built from). Both are
 * read-only and work while ferryd runs.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "ferry/json.h"
#include "ferry/projector.h"

typedef struct hist_ctx {
  bool json;
  size_t n;
} hist_ctx;

static int print_record(void *arg, json_t *r) {
  hist_ctx *h = arg;
  h->n++;
  if (h->json) {
    char *s = ferry_json_dump(r, 0);
    puts(s ? s : "{}");
    free(s);
    return 0;
  }
  char *cid = ferry_json_dump(json_object_get(r, "cloud_id"), 0);
  char *fields = ferry_json_dump(json_object_get(r, "fields"), 0);
  char *seqs = ferry_json_dump(json_object_get(r, "seqs"), 0);
  printf("%s  %-6s %-32s %3d %-7s %s/%s -> %s", json_string_value(json_object_get(r, "at")),
         json_string_value(json_object_get(r, "method")),
         json_string_value(json_object_get(r, "path")),
         (int)json_integer_value(json_object_get(r, "status")),
         json_string_value(json_object_get(r, "outcome")),
         json_string_value(json_object_get(r, "entity")), json_string_value(json_object_get(r, "key")),
         cid ? cid : "null");
  if (fields && strcmp(fields, "[]") != 0) printf("  fields %s", fields);
  if (seqs && strcmp(seqs, "[]") != 0) printf("  events %s", seqs);
  if (json_object_get(r, "error")) printf("  error: %s", json_string_value(json_object_get(r, "error")));
  printf("\n");
  free(cid);
  free(fields);
  free(seqs);
  return 0;
}

int cli_cmd_history(cli_env *env, const cli_args *a) {
  cli_project cp;
  ferry_error err;
  hist_ctx h = {cli_flag(a, "json"), 0};
  int rc = cli_project_open(env, a->pos[0], CLI_PROJECT_READ, &cp);
  if (rc) return rc;
  if (ferry_projector_history(cp.proj, cli_arg(a, "entity"), cli_arg(a, "row"), print_record, &h, &err))
    rc = cli_fail(&err);
  else if (!h.json && h.n == 0)
    printf("no cloud calls recorded for %s%s\n", a->pos[0],
           cli_arg(a, "entity") || cli_arg(a, "row") ? " matching the filter" : "");
  cli_project_close(&cp);
  return rc;
}

int cli_cmd_explain(cli_env *env, const cli_args *a) {
  const char *ek = a->pos[1], *slash = strchr(ek, '/');
  if (!slash) return cli_failf(FERRY_EINVAL, "explain: expected ENTITY/KEY, got '%s'", ek);
  char *entity = strndup(ek, (size_t)(slash - ek));
  cli_project cp;
  ferry_error err;
  json_t *o = NULL;
  int rc = entity ? cli_project_open(env, a->pos[0], CLI_PROJECT_READ, &cp) : 1;
  if (rc) { free(entity); return rc; }
  if (ferry_projector_explain(cp.proj, entity, slash + 1, &o, &err)) {
    rc = cli_fail(&err);
  } else {
    char *s = ferry_json_dump(o, FERRY_JSON_SORTED | (cli_flag(a, "json") ? 0 : FERRY_JSON_INDENT));
    puts(s ? s : "{}");
    free(s);
  }
  json_decref(o);
  free(entity);
  cli_project_close(&cp);
  return rc;
}
