/*
 * Runs a fuzz target's LLVMFuzzerTestOneInput over every file in the corpus
 * folders given on the command line, so the normal suite exercises the seed
 * corpus (and every crash input that was ever added to it) without libFuzzer.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  struct stat st;
  if (fstat(fileno(f), &st) != 0) { fclose(f); return -1; }
  size_t n = (size_t)st.st_size;
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf || fread(buf, 1, n, f) != n) { free(buf); fclose(f); return -1; }
  fclose(f);
  LLVMFuzzerTestOneInput(buf, n);
  free(buf);
  return 0;
}

int main(int argc, char **argv) {
  int files = 0;
  for (int i = 1; i < argc; i++) {
    DIR *d = opendir(argv[i]);
    if (!d) { fprintf(stderr, "cannot open corpus %s\n", argv[i]); return 1; }
    struct dirent *e;
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
      if (run_file(path) != 0) { fprintf(stderr, "cannot read %s\n", path); closedir(d); return 1; }
      files++;
    }
    closedir(d);
  }
  printf("replayed %d corpus files\n", files);
  return files > 0 ? 0 : 1;
}
