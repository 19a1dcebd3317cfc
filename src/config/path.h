/*
 * Paths in the configuration file are relative to the file (SPEC §6). These
 * helpers find the file's folder once, through realpath, and anchor relative
 * paths to it, so every path the rest of ferry sees is absolute and does not
 * change meaning when the working directory does.
 */
#ifndef FERRY_CONFIG_PATH_H
#define FERRY_CONFIG_PATH_H

#include "ferry/ferry.h"

/* Resolves the folder holding file (which itself need not exist). Sets *dir to
 * that folder's realpath and *abs to *dir joined with file's last component;
 * both malloc'd, the caller's. FERRY_EIO (naming file and strerror) when the
 * folder cannot be resolved, FERRY_ENOMEM when out of memory. */
ferry_status ferry_config_path_dir(const char *file, char **dir, char **abs, ferry_error *err);

/* path made absolute: as given when it already is, else joined to dir (an
 * absolute, symlink-free folder), with "." segments and repeated slashes
 * dropped and leading ".." segments taken off dir. Malloc'd; NULL when out of
 * memory. The target need not exist. */
char *ferry_config_path_resolve(const char *dir, const char *path);

#endif /* FERRY_CONFIG_PATH_H */
