/* core/error.c — the thread-local error, the fatal handler and the build-configuration check. */
#include "core/atomic.h"
#include "core/debug.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The calling thread's error: written and read by its own thread only. */
static __thread struct {
    ouro_err code;
    char message[256];
} tls_error;

/* Set by the user (usually once, at start-up), read on fatal paths from any thread. */
static _Atomic(ouro_fatal_handler) fatal_handler;
static _Atomic(void *) fatal_arg;

ouro_err ouro_err_occurred(void) { return tls_error.code; }

const char *ouro_err_message(void) { return tls_error.code ? tls_error.message : ""; }

void ouro_err_clear(void) {
    tls_error.code = OURO_OK;
    tls_error.message[0] = '\0';
}

void _ouro_err_set(ouro_err code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_error.message, sizeof tls_error.message, fmt, ap);
    va_end(ap);
    tls_error.code = code;
}

ouro_fatal_handler ouro_set_fatal_handler(ouro_fatal_handler handler, void *arg) {
    atomic_store(&fatal_arg, arg);
    return atomic_exchange(&fatal_handler, handler);
}

/* Formats "ouro: <message>\n" into buf and writes it to stderr with one write(2). */
static void error_write_line(char *buf, size_t size, const char *fmt, va_list ap) {
    int n = snprintf(buf, size, "ouro: ");
    n += vsnprintf(buf + n, size - (size_t)n - 1, fmt, ap);
    if (n > (int)size - 2) n = (int)size - 2;
    buf[n] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, (size_t)n + 1);
    (void)w;
    buf[n] = '\0';
}

void _ouro_warn(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    error_write_line(buf, sizeof buf, fmt, ap);
    va_end(ap);
}

void _ouro_fatal(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    error_write_line(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ouro_fatal_handler h = atomic_load(&fatal_handler);
    if (h) h(buf + 6 /* skip "ouro: " */, atomic_load(&fatal_arg));
    abort();
}

int ouro_config_check_(int debug_level, int hardened, int torture, int tsan, int refcount_atomic) {
    if (debug_level == OURO_DEBUG_LEVEL && hardened == OURO_HARDENED && torture == OURO_TORTURE &&
        tsan == OURO_TSAN && refcount_atomic == OURO_REFCOUNT_ATOMIC)
        return 0;
    _ouro_err_set(OURO_ERR_STATE,
                  "program compiled for debug-level=%d hardened=%d torture=%d tsan=%d refcount-atomic=%d, "
                  "library built with debug-level=%d hardened=%d torture=%d tsan=%d refcount-atomic=%d",
                  debug_level, hardened, torture, tsan, refcount_atomic, OURO_DEBUG_LEVEL, OURO_HARDENED,
                  OURO_TORTURE, OURO_TSAN, OURO_REFCOUNT_ATOMIC);
    return -1;
}
