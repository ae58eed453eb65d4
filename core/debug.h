/* core/debug.h — assertion tiers, the fatal handler and error reporting, for use inside libouro.
 *
 * Tiers follow -Ddebug-level (OURO_DEBUG_LEVEL in ouro/config.h):
 *   OURO_API_CHECK  level >= 1: misuse of the public API that is not cheap to detect;
 *   OURO_ASSERT     level >= 2: internal invariants;
 *   OURO_EXPENSIVE  level >= 3: heap walks.
 * A disabled assertion still compiles its expression (and so keeps it type-checked), never runs it. */
#ifndef OURO_CORE_DEBUG_H
#define OURO_CORE_DEBUG_H
#ifndef OURO_BUILD_CORE
#error "core/debug.h is internal to libouro"
#endif

#include "ouro.h"
#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

#define OURO_INTERNAL __attribute__((visibility("hidden")))
/* Thread-local variables on hot paths: initial-exec, one %fs-relative load (through a GOT offset in the
 * shared library) instead of a __tls_get_addr call. A library with any of them puts its whole TLS block
 * (694 bytes today) in static TLS; a dlopen of libouro.so takes that from glibc's surplus, and glibc
 * then never unloads it (dlclose leaves it loaded: its thread-exit hooks and fork handlers stay mapped).
 * Keep thread-local state small: no arrays (core/repr.c keeps its frames on the stack).
 * tests/dlopen/ loads the library with dlopen and checks both. */
#define OURO_TLS_FAST __attribute__((tls_model("initial-exec")))
#define OURO_NOINLINE __attribute__((noinline))
#define OURO_COLD __attribute__((cold, noinline))
#define OURO_LIKELY(x) __builtin_expect(!!(x), 1)
#define OURO_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Reports corruption or a broken invariant and aborts: prints one line (formatted on the stack, no
 * allocation), calls the user's fatal handler, then abort(). */
OURO_INTERNAL _Noreturn void _ouro_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), cold));

/* Sets the calling thread's error (see ouro/error.h). Never allocates. */
OURO_INTERNAL void _ouro_err_set(ouro_err code, const char *fmt, ...) __attribute__((format(printf, 2, 3), cold));

/* Prints one warning line to stderr without allocating (for reported-and-ignored misuse). */
OURO_INTERNAL void _ouro_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2), cold));

/* The library's bookkeeping allocations (core/mem.c): the C library's malloc, calloc and realloc, with
 * fault injection (ouro_debug_fail_malloc). Every caller handles NULL. */
OURO_INTERNAL void *_ouro_sys_malloc(size_t n);
OURO_INTERNAL void *_ouro_sys_calloc(size_t n, size_t size);
OURO_INTERNAL void *_ouro_sys_realloc(void *p, size_t n);

/* pthread_create and getrandom for ouro's own threads and randomness (core/mem.c), with fault
 * injection (ouro_debug_fail_thread_create, ouro_debug_fail_getrandom). Every caller has a fallback. */
OURO_INTERNAL int _ouro_sys_thread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg); /* returns once fn runs; EINTR: a fork() is under way */
/* fork() waits for a thread start in progress and refuses new ones until it is done (core/mem.c; alloc's
 * fork handlers call these, prepare before taking any lock: begin raises the flag, wait drains the count).
 * A thread of ouro's that ends calls leave_begin (false: a fork is under way, stay) and is counted until
 * whoever joins it calls leave_end. */
OURO_INTERNAL void _ouro_sys_thread_atfork_begin(void);
OURO_INTERNAL void _ouro_sys_thread_atfork_wait(void);
OURO_INTERNAL bool _ouro_sys_thread_leave_begin(void);
OURO_INTERNAL void _ouro_sys_thread_leave_end(void);
OURO_INTERNAL void _ouro_sys_thread_atfork_release(bool child);
OURO_INTERNAL ssize_t _ouro_sys_getrandom(void *buf, size_t n, unsigned flags);

/* The type name of the object whose block starts at p, or NULL when p is not the start of an ouro
 * object block (core/object.c; for diagnostics). */
OURO_INTERNAL const char *_ouro_object_type_name_at(const void *p);

/* Fault injection's countdowns, one per ouro_fault kind (core/mem.c). */
OURO_INTERNAL extern _Atomic unsigned long _ouro_fault_countdown[];

/* Fault injection's countdown: true for the call that brings *countdown from 1 to 0 (0: disarmed). */
OURO_INTERNAL bool _ouro_fault_due(_Atomic unsigned long *countdown);

/* Registers the OURO_LEAK_CHECK exit handler (core/leak.c); called once, when the library loads (by the
 * allocator's constructor, which every program that uses ouro links). */
OURO_INTERNAL void _ouro_leak_check_init(void);

#define OURO_CHECK_AT_(level, expr)                                                                \
    do {                                                                                          \
        if (OURO_DEBUG_LEVEL >= (level)) {                                                        \
            if (OURO_UNLIKELY(!(expr)))                                                           \
                _ouro_fatal("assertion failed: %s (%s:%d)", #expr, __FILE__, __LINE__);           \
        } else {                                                                                  \
            (void)sizeof(!(expr));                                                                \
        }                                                                                         \
    } while (0)

#define OURO_API_CHECK(expr) OURO_CHECK_AT_(1, expr)
#define OURO_ASSERT(expr) OURO_CHECK_AT_(2, expr)
#define OURO_EXPENSIVE(expr) OURO_CHECK_AT_(3, expr)

#endif /* OURO_CORE_DEBUG_H */
