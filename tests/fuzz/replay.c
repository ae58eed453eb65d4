/* tests/fuzz/replay.c — runs the fuzz target over saved inputs, without libFuzzer.
 *
 *   ouro-fuzz-replay [DIR|FILE]...      (default: tests/fuzz/corpus)
 *
 * Each directory's regular files are run in name order (so a run is repeatable), one line per input.
 * A failing input aborts inside the target with an "ouro-fuzz: FAIL" line (or a sanitizer report)
 * after the "replay: NAME" line that names it, so the process exits nonzero; a run that reaches the end
 * prints "N passed, 0 failed". Builds with any C11 compiler (Zig's clang for `./zigw build test`, TSan
 * included): it needs nothing of libFuzzer's. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REPLAY_MAX_INPUT (1u << 20) /* the fuzz step caps inputs far below this */

static unsigned replay_passed;

static double replay_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return -1;
    }
    static uint8_t buf[REPLAY_MAX_INPUT];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    printf("replay: %s (%zu bytes) ... ", path, n);
    fflush(stdout);
    double t0 = replay_now();
    LLVMFuzzerTestOneInput(buf, n);
    printf("ok (%.1f ms)\n", (replay_now() - t0) * 1e3);
    fflush(stdout);
    replay_passed++;
    return 0;
}

static int replay_name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int replay_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: no such file or directory: %s\n", path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) return replay_file(path);
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "replay: cannot read directory %s\n", path);
        return -1;
    }
    char **names = NULL;
    size_t count = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue; /* ".", "..", hidden files such as .gitkeep */
        if (count == cap) {
            cap = cap ? 2 * cap : 64;
            names = realloc(names, cap * sizeof *names);
            if (!names) abort();
        }
        names[count++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, count, sizeof *names, replay_name_cmp);
    int rc = 0;
    for (size_t i = 0; i < count; i++) {
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", path, names[i]);
        struct stat fst;
        if (rc == 0 && stat(full, &fst) == 0 && S_ISREG(fst.st_mode)) rc = replay_file(full);
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv) {
    int rc = 0;
    if (argc < 2) rc = replay_path("tests/fuzz/corpus");
    for (int i = 1; i < argc && rc == 0; i++) rc = replay_path(argv[i]);
    if (rc != 0) {
        printf("%u passed, 1 failed\n", replay_passed);
        return 1;
    }
    printf("%u passed, 0 failed\n", replay_passed);
    return replay_passed ? 0 : 1;
}
