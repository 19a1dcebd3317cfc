/*
 * ferry ingest: one file (or standard input) is one batch, appended to the
 * customer's log all or nothing. With --skip-invalid the invalid changes are
 * written, with their reasons, to the rejects file and the rest is appended.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ferry/change.h"
#include "ferry/json.h"

#define STDIN_MAX ((size_t)4 << 30) /* a batch read from a pipe is held in memory */

typedef struct input {
  char *buf;
  size_t len;
  bool mapped;
} input;

static ferry_status read_stdin(input *in, ferry_error *err) {
  size_t cap = 1 << 20;
  in->buf = malloc(cap);
  if (!in->buf) return ferry_error_set(err, FERRY_ENOMEM, "out of memory reading standard input");
  for (;;) {
    if (in->len == cap) {
      if (cap >= STDIN_MAX)
        return ferry_error_set(err, FERRY_ETOOBIG, "standard input is over %zu bytes", STDIN_MAX);
      char *p = realloc(in->buf, cap * 2);
      if (!p) return ferry_error_set(err, FERRY_ENOMEM, "out of memory reading standard input");
      in->buf = p;
      cap *= 2;
    }
    ssize_t n = read(0, in->buf + in->len, cap - in->len);
    if (n == 0) return FERRY_OK;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ferry_error_set(err, FERRY_EIO, "reading standard input: %s", strerror(errno));
    in->len += (size_t)n;
  }
}

static ferry_status read_input(const char *path, input *in, ferry_error *err) {
  memset(in, 0, sizeof *in);
  if (!path || strcmp(path, "-") == 0) return read_stdin(in, err);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ferry_error_set(err, FERRY_EIO, "cannot open %s: %s", path, strerror(errno));
  struct stat st;
  ferry_status rc = FERRY_OK;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    /* not a regular file (a fifo, a device): read it like a pipe */
    int saved = dup(0);
    dup2(fd, 0);
    rc = read_stdin(in, err);
    dup2(saved, 0);
    close(saved);
  } else if (st.st_size > 0) {
    in->buf = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (in->buf == MAP_FAILED) {
      in->buf = NULL;
      rc = ferry_error_set(err, FERRY_EIO, "cannot read %s: %s", path, strerror(errno));
    } else {
      in->len = (size_t)st.st_size;
      in->mapped = true;
      madvise(in->buf, in->len, MADV_SEQUENTIAL);
    }
  }
  close(fd);
  return rc;
}

static void input_free(input *in) {
  if (in->mapped) munmap(in->buf, in->len);
  else free(in->buf);
}

static void print_errors(const char *name, const ferry_batch *b) {
  const ferry_change_error *e = ferry_batch_errors(b);
  size_t n = ferry_batch_error_count(b);
  for (size_t i = 0; i < n; i++)
    fprintf(stderr, "%s:%llu: %s%s%s\n", name, (unsigned long long)e[i].line, e[i].field,
            e[i].field[0] ? ": " : "", e[i].reason);
  uint64_t total = ferry_batch_invalid_total(b);
  if (total > n) fprintf(stderr, "%s: ... and %llu more\n", name, (unsigned long long)(total - n));
}

/* Writes each rejected change as one JSON object a line:
 * {"line":N,"field":F,"reason":R,"input":"<the line as given>"}; atomically. */
static ferry_status write_rejects(const char *path, const ferry_batch *b, ferry_error *err) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) return ferry_error_set(err, FERRY_EIO, "cannot write %s: %s", tmp, strerror(errno));
  const ferry_change_error *e = ferry_batch_errors(b);
  ferry_status st = FERRY_OK;
  for (size_t i = 0; i < ferry_batch_error_count(b) && !st; i++) {
    json_t *o = json_pack("{s:I, s:s, s:s}", "line", (json_int_t)e[i].line, "field", e[i].field,
                          "reason", e[i].reason);
    if (o && e[i].text) json_object_set_new(o, "input", json_stringn(e[i].text, e[i].text_len));
    char *s = o ? ferry_json_dump(o, 0) : NULL;
    if (!s) st = ferry_error_set(err, FERRY_ENOMEM, "out of memory writing rejects");
    else if (fprintf(f, "%s\n", s) < 0) st = ferry_error_set(err, FERRY_EIO, "writing %s", tmp);
    free(s);
    json_decref(o);
  }
  if (fflush(f) != 0 || fsync(fileno(f)) != 0)
    if (!st) st = ferry_error_set(err, FERRY_EIO, "writing %s: %s", tmp, strerror(errno));
  fclose(f);
  if (!st && rename(tmp, path) != 0)
    st = ferry_error_set(err, FERRY_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
  if (st) unlink(tmp);
  return st;
}

int cli_cmd_ingest(cli_env *env, const cli_args *a) {
  const char *customer = a->pos[0];
  const char *path = a->npos > 1 ? a->pos[1] : "-";
  const char *name = strcmp(path, "-") == 0 ? "<stdin>" : path;
  const char *fmt_name = cli_arg(a, "format");
  const char *rejects = cli_arg(a, "skip-invalid");
  ferry_format fmt = FERRY_FORMAT_NDJSON;
  ferry_error err;
  ferry_batch *batch = NULL;
  ferry_store *store = NULL;
  input in = {NULL, 0, false};
  int rc = 0;

  ferry_error_clear(&err);
  if (!cli_check_customer(customer)) return 2;
  if (fmt_name && strcmp(fmt_name, "protobuf") == 0) fmt = FERRY_FORMAT_PROTOBUF;
  else if (fmt_name && strcmp(fmt_name, "ndjson") != 0)
    return cli_failf(FERRY_EINVAL, "--format: expected ndjson or protobuf, got '%s'", fmt_name);

  /* Open the store first: a busy data directory should fail before we read a big file. */
  if ((rc = cli_open_store(env, FERRY_STORE_WRITE, &store))) goto done;
  if (read_input(path, &in, &err)) { rc = cli_fail(&err); goto done; }

  ferry_decode_opts opts = {customer, rejects != NULL, 0};
  ferry_status st = ferry_batch_decode(fmt, in.buf, in.len, &opts, &batch, &err);
  if (st == FERRY_EINVAL && batch) {
    print_errors(name, batch);
    fprintf(stderr, "ferry: %s: %llu invalid change(s); nothing appended\n", name,
            (unsigned long long)ferry_batch_invalid_total(batch));
    rc = 2;
    goto done;
  }
  if (st) { rc = cli_fail(&err); goto done; }
  if (rejects && ferry_batch_error_count(batch) > 0) {
    print_errors(name, batch);
    if (write_rejects(rejects, batch, &err)) { rc = cli_fail(&err); goto done; }
  }

  ferry_append_result res;
  memset(&res, 0, sizeof res);
  if (ferry_store_append(store, customer, ferry_batch_changes(batch), ferry_batch_count(batch),
                         &res, &err)) {
    rc = cli_fail(&err);
    goto done;
  }
  printf("appended %llu, duplicates %llu, rejected %llu, head seq %llu\n",
         (unsigned long long)res.appended, (unsigned long long)res.duplicates,
         (unsigned long long)ferry_batch_invalid_total(batch), (unsigned long long)res.head_seq);
done:
  ferry_batch_free(batch);
  input_free(&in);
  ferry_store_close(store);
  return rc;
}
