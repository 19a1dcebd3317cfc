/*
 * Resolving the configuration file's folder and the relative paths in it.
 * Only the folder goes through realpath: the targets (the mapping file, the
 * data dir) may not exist yet when the config is loaded.
 */
#include "config/path.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

ferry_status ferry_config_path_dir(const char *file, char **dir, char **abs, ferry_error *err) {
  ferry_status st = FERRY_OK;
  const char *slash = strrchr(file, '/');
  const char *base = slash ? slash + 1 : file;
  char *folder = NULL;
  char *real = NULL;
  char *joined = NULL;

  *dir = NULL;
  *abs = NULL;
  /* "a/b.yaml" -> "a", "b.yaml" -> ".", "/b.yaml" -> "/" */
  if (!slash)
    folder = strdup(".");
  else
    folder = strndup(file, slash == file ? 1 : (size_t)(slash - file));
  if (!folder) {
    st = ferry_error_set(err, FERRY_ENOMEM, "%s: out of memory", file);
    goto done;
  }
  real = realpath(folder, NULL);
  if (!real) {
    int e = errno;
    st = ferry_error_set(err, e == ENOMEM ? FERRY_ENOMEM : FERRY_EIO,
                         "%s: cannot resolve its folder %s: %s", file, folder, strerror(e));
    goto done;
  }
  joined = malloc(strlen(real) + 1 + strlen(base) + 1);
  if (!joined) {
    st = ferry_error_set(err, FERRY_ENOMEM, "%s: out of memory", file);
    goto done;
  }
  /* realpath gives "/" alone, never a trailing slash otherwise */
  strcpy(joined, real);
  if (strcmp(real, "/") != 0) strcat(joined, "/");
  strcat(joined, base);
  *dir = real;
  *abs = joined;
  real = NULL;
  joined = NULL;

done:
  free(joined);
  free(real);
  free(folder);
  return st;
}

char *ferry_config_path_resolve(const char *dir, const char *path) {
  size_t n = strlen(dir);
  int leading = 1; /* still in the path's leading ".." segments */
  const char *p = path;
  char *out;

  if (path[0] == '/') return strdup(path);
  out = malloc(n + 1 + strlen(path) + 2);
  if (!out) return NULL;
  memcpy(out, dir, n);
  if (n == 1) n = 0; /* dir is "/": segments add their own slash */
  while (*p) {
    const char *seg = p;
    size_t len = strcspn(p, "/");
    p += len;
    while (*p == '/')
      p++;
    if (len == 0 || (len == 1 && seg[0] == '.')) continue;
    if (leading && len == 2 && seg[0] == '.' && seg[1] == '.') {
      /* dir has no symlinks, so its parent is found by text alone; a later
       * ".." could follow a symlink inside path and stays as written */
      while (n > 0 && out[n - 1] != '/')
        n--;
      if (n > 0) n--;
      continue;
    }
    leading = 0;
    out[n++] = '/';
    memcpy(out + n, seg, len);
    n += len;
  }
  if (n == 0) out[n++] = '/';
  out[n] = '\0';
  return out;
}
