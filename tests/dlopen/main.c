/* tests/dlopen/main.c — libouro.so loaded by dlopen, not linked: argv[1] is tests/dlopen/plugin.c's
 * shared object, which links it. Checks that the load succeeds (libouro.so's static TLS must fit glibc's
 * surplus), that the runtime works there (plugin_run), that dlclose leaves libouro loaded (glibc never
 * unloads a library with static TLS, and libouro's thread-exit hooks and fork handlers must stay mapped),
 * that threads exit and fork after the dlclose, and that a second load runs the runtime again after
 * ouro_fini. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(cond, ...) \
    do { \
        if (!(cond)) { \
            fprintf(stderr, "dlopen_check: " __VA_ARGS__); \
            fprintf(stderr, "\n"); \
            exit(1); \
        } \
    } while (0)

static void *idle_thread(void *arg) { return arg; }

static void run_plugin(const char *path, int round) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    CHECK(h, "round %d: dlopen %s: %s", round, path, dlerror());
    int (*run)(int) = (int (*)(int))dlsym(h, "plugin_run");
    CHECK(run, "round %d: no plugin_run: %s", round, dlerror());
    CHECK(run(4) == 0, "round %d: plugin_run failed", round);
    CHECK(dlopen("libouro.so.0", RTLD_NOW | RTLD_NOLOAD), "round %d: libouro.so.0 is not loaded", round);
    CHECK(dlclose(h) == 0, "round %d: dlclose: %s", round, dlerror());
}

int main(int argc, char **argv) {
    CHECK(argc == 2, "usage: dlopen_check PLUGIN.so");
    CHECK(!dlopen("libouro.so.0", RTLD_NOW | RTLD_NOLOAD), "libouro.so.0 is loaded before the plugin");
    run_plugin(argv[1], 1);
    CHECK(dlopen("libouro.so.0", RTLD_NOW | RTLD_NOLOAD), "dlclose unloaded libouro.so.0");
    pthread_t t; /* a thread that starts and exits after the dlclose: the exit hooks still run */
    CHECK(pthread_create(&t, NULL, idle_thread, NULL) == 0 && pthread_join(t, NULL) == 0, "thread");
    pid_t pid = fork(); /* the fork handlers are still mapped */
    CHECK(pid >= 0, "fork");
    if (pid == 0) _exit(0);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed");
    run_plugin(argv[1], 2);
    printf("dlopen_check: ok (2 loads, %d collections)\n", 2);
    return 0;
}
