/*
 * ferry backup DIR: a consistent copy of the whole data directory (every
 * customer, as of one moment) as a new data directory, through a RocksDB
 * checkpoint, marked as restored (ferry_backup). It needs the writer's lock, so while
 * ferryd runs the backup is POST /v1/backup instead (cli_open_store says so).
 */
#include <stdio.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "ferry/event.h"
#include "ferry/projector.h"

int cli_cmd_backup(cli_env *env, const cli_args *a) {
  const char *dir = a->pos[0];
  char current[4096];
  struct stat sb;
  ferry_store *s = NULL;
  ferry_error err;
  ferry_error_clear(&err);

  /* A writer would create an empty store where there is none: say so instead. */
  if (snprintf(current, sizeof current, "%s/db/CURRENT", env->data_dir) >= (int)sizeof current ||
      stat(current, &sb) != 0)
    return cli_failf(FERRY_ENOTFOUND, "no ferry data in %s to back up", env->data_dir);
  int rc = cli_open_store(env, FERRY_STORE_WRITE, &s);
  if (rc) return rc;
  int64_t t0 = ferry_time_now_us();
  if (ferry_backup(s, dir, &err))
    rc = cli_fail(&err);
  else
    printf("backed up %s to %s in %.1f s; 'ferry --data %s status' reads it\n", env->data_dir, dir,
           (double)(ferry_time_now_us() - t0) / 1e6, dir);
  ferry_store_close(s);
  return rc;
}
