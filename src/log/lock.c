/*
 * The pid lock (see lock.h).
 *
 * It is an open-file-description lock (F_OFD_SETLK), not a classic POSIX
 * record lock: a classic lock belongs to the process, so a second open of the
 * directory in the same process would "succeed", and closing *any* fd of the
 * lock file (for example a reader peeking at it) would silently drop the
 * writer's lock. An OFD lock belongs to the one open() that took it. The
 * kernel releases it when the process dies, so a stale file never blocks.
 */
#include "log/lock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

ferry_status lock_mkdirs(const char *dir, ferry_error *err) {
  char path[PATH_MAX];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof path)
    return ferry_error_set(err, FERRY_EINVAL, "data directory path '%s' is empty or too long", dir);
  memcpy(path, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (path[i] != '/' && path[i] != '\0') continue;
    char c = path[i];
    path[i] = '\0';
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
      return ferry_error_set(err, FERRY_EIO, "cannot create directory %s: %s", path,
                             strerror(errno));
    path[i] = c;
  }
  return FERRY_OK;
}

/* The pid the holder wrote into the lock file, or 0 if it cannot be read. */
static long holder_pid(int fd) {
  char buf[32];
  ssize_t r = pread(fd, buf, sizeof buf - 1, 0);
  if (r <= 0) return 0;
  buf[r] = '\0';
  long pid = strtol(buf, NULL, 10);
  return pid > 0 ? pid : 0;
}

static ferry_status write_pid(int fd, const char *path, ferry_error *err) {
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n)
    return ferry_error_set(err, FERRY_EIO, "cannot write %s: %s", path, strerror(errno));
  return FERRY_OK;
}

ferry_status lock_acquire(const char *dir, int *out, ferry_error *err) {
  ferry_status st = FERRY_OK;
  char path[PATH_MAX];
  int fd = -1;

  *out = -1;
  if ((st = lock_mkdirs(dir, err))) goto done;
  if (snprintf(path, sizeof path, "%s/ferry.lock", dir) >= (int)sizeof path) {
    st = ferry_error_set(err, FERRY_EINVAL, "data directory path '%s' is too long", dir);
    goto done;
  }
  fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    st = ferry_error_set(err, FERRY_EIO, "cannot open %s: %s", path, strerror(errno));
    goto done;
  }
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
    if (errno == EAGAIN || errno == EACCES) {
      long pid = holder_pid(fd);
      if (pid)
        st = ferry_error_set(err, FERRY_EBUSY, "data directory %s is in use by pid %ld", dir, pid);
      else
        st = ferry_error_set(err, FERRY_EBUSY, "data directory %s is in use by another process",
                             dir);
    } else {
      st = ferry_error_set(err, FERRY_EIO, "cannot lock %s: %s", path, strerror(errno));
    }
    goto done;
  }
  if ((st = write_pid(fd, path, err))) goto done;
  *out = fd;
  fd = -1;
done:
  if (fd >= 0) close(fd);
  return st;
}
