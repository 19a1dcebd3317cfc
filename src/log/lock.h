/*
 * The data directory's pid lock, DIR/ferry.lock: held by the one writer for
 * as long as its store is open, with the writer's pid inside so that a
 * second writer can say who holds the directory.
 */
#ifndef FERRY_LOG_LOCK_H
#define FERRY_LOG_LOCK_H

#include "ferry/ferry.h"

/*
 * Creates dir (and its parents) if needed and takes the lock. Returns the
 * lock's fd in *fd (the caller releases the lock with close()), or
 * FERRY_EBUSY with "data directory DIR is in use by pid N".
 */
ferry_status lock_acquire(const char *dir, int *fd, ferry_error *err);

/* Creates dir and any missing parents (mkdir -p). */
ferry_status lock_mkdirs(const char *dir, ferry_error *err);

#endif /* FERRY_LOG_LOCK_H */
