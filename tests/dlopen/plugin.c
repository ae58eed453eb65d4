/* tests/dlopen/plugin.c — a plugin that links libouro.so, loaded with dlopen by tests/dlopen/main.c (as
 * an interpreter loads an extension module): the library's static TLS must fit glibc's surplus, and
 * the runtime must work from a dlopen'ed copy, threads and cycles included. */
#include <ouro.h>

#include <pthread.h>
#include <stdio.h>

enum { CYCLES = 500 };

/* Makes CYCLES two-list cycles on an attached thread and drops them: garbage for the collector. */
static void *make_cycles(void *arg) {
    (void)arg;
    if (ouro_thread_attach() != 0) return (void *)1;
    for (int i = 0; i < CYCLES; i++) {
        ouro_object *a = ouro_list_new(0), *b = ouro_list_new(0);
        if (!a || !b || ouro_list_append(a, b) != 0 || ouro_list_append(b, a) != 0) return (void *)1;
        ouro_decref(a);
        ouro_decref(b);
    }
    ouro_thread_detach();
    return NULL;
}

/* Runs nthreads cycle makers, collects, and stops the runtime. 0 when every check held. */
int plugin_run(int nthreads);
int plugin_run(int nthreads) {
    if (ouro_init(NULL) != 0 || ouro_thread_attach() != 0) return fprintf(stderr, "attach: %s\n", ouro_err_message()), 1;
    ouro_gc_disable(); /* the one collection below finds every cycle */
    pthread_t t[16];
    if (nthreads > 16) nthreads = 16;
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&t[i], NULL, make_cycles, NULL) != 0) return 1;
    int bad = 0;
    for (int i = 0; i < nthreads; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad |= r != NULL;
    }
    long found = ouro_gc_collect(2);
    if (bad || found != 2L * CYCLES * nthreads) {
        fprintf(stderr, "plugin: collected %ld objects, expected %ld (thread failure: %d)\n", found,
                2L * CYCLES * nthreads, bad);
        return 1;
    }
    ouro_gc_enable();
    if (ouro_thread_detach() != 0 || ouro_fini() != 0) return fprintf(stderr, "fini: %s\n", ouro_err_message()), 1;
    return 0;
}
