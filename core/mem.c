/* core/mem.c — the library's own bookkeeping allocations (malloc, calloc, realloc of the C library)
 * and fault injection for them and for the OS layer.
 *
 * ouro's internal records (thread records, refcount queue chunks, the collector's work space, ...)
 * come from the C library, never from ouro's own heaps, whose slow paths reach safepoints. They all go
 * through _ouro_sys_malloc/calloc/realloc so that a test can make the nth of them fail
 * (ouro_debug_fail_malloc) and show that every caller copes with NULL. The threads ouro starts (the
 * reclaimer, the stop watchdog, the collector's helper) and its getrandom() calls go through
 * _ouro_sys_thread_create and _ouro_sys_getrandom for the same reason (ouro_debug_fail_thread_create,
 * ouro_debug_fail_getrandom). */
#include "core/atomic.h"
#include "core/debug.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

bool _ouro_fault_due(_Atomic unsigned long *countdown) {
    unsigned long n = ouro_load_relaxed(countdown);
    while (n != 0) {
        if (atomic_compare_exchange_weak(countdown, &n, n - 1)) return n == 1;
    }
    return false;
}

/* Each kind's countdown: the call that brings it from 1 to 0 fails (ouro_debug_fail). */
_Atomic unsigned long _ouro_fault_countdown[OURO_FAULT_KINDS];
#define malloc_countdown _ouro_fault_countdown[OURO_FAULT_MALLOC]
#define thread_countdown _ouro_fault_countdown[OURO_FAULT_THREAD]
#define random_countdown _ouro_fault_countdown[OURO_FAULT_RANDOM]

int ouro_debug_fail(ouro_fault what, unsigned long nth) {
    if ((unsigned)what >= OURO_FAULT_KINDS) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_debug_fail: no fault kind %d", (int)what);
        return -1;
    }
    atomic_store(&_ouro_fault_countdown[what], nth);
    return 0;
}

unsigned long ouro_debug_fault_pending(ouro_fault what) {
    if ((unsigned)what < OURO_FAULT_KINDS) return atomic_load(&_ouro_fault_countdown[what]);
    _ouro_err_set(OURO_ERR_INVALID, "ouro_debug_fault_pending: no fault kind %d", (int)what);
    return 0;
}

void ouro_debug_fail_malloc(unsigned long nth) { atomic_store(&malloc_countdown, nth); }

/* In the malloc shim (libouro-malloc, malloc/shim.c) malloc is ouro's: bookkeeping goes to the C library's
 * own allocator, so that it never re-enters ouro's allocator while one of its locks is held. (The shim
 * links only the allocator layer, which makes no bookkeeping allocation; this keeps it so.) */
#ifdef OURO_MALLOC_SHIM
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
#define sys_malloc __libc_malloc
#define sys_calloc __libc_calloc
#define sys_realloc __libc_realloc
#else
#define sys_malloc malloc
#define sys_calloc calloc
#define sys_realloc realloc
#endif

void *_ouro_sys_malloc(size_t n) { return _ouro_fault_due(&malloc_countdown) ? NULL : sys_malloc(n); }

void *_ouro_sys_calloc(size_t n, size_t size) { return _ouro_fault_due(&malloc_countdown) ? NULL : sys_calloc(n, size); }

void *_ouro_sys_realloc(void *p, size_t n) { return _ouro_fault_due(&malloc_countdown) ? NULL : sys_realloc(p, n); }

void ouro_debug_fail_thread_create(unsigned long nth) { atomic_store(&thread_countdown, nth); }

/* ---- ouro's thread starts and fork() ----------------------------------------------------------------
 * A thread is not started until it runs its function: before that, the C library and a sanitizer's
 * runtime set it up, and that may allocate (ASan's thread start callocs in pthread_getattr_np). A fork()
 * in that window copies a process whose allocator lock the new thread holds, and Debian's ASan (clang
 * 14) does not lock its allocator around fork: the child's first thread start hung on it. It happened
 * every run where fork()'s own prepare started a thread: the stop it makes is the process's first, which
 * starts the stop watchdog, and the fork followed within microseconds (test_fork_child_one_reclaimer,
 * test_fork_starts_a_thread_in_prepare). So _ouro_sys_thread_create returns only once the new thread has
 * entered its function, counted in `starting` until then, and fork's prepare (alloc's handler, before it
 * takes any lock of the allocator's) raises `forking` and waits for `starting` to drain. A start that
 * finds `forking` raised is refused (EINTR, which pthread_create never returns): each caller already
 * copes with a refused start and tries again later. A thread of ouro's that ends (the decay thread, when
 * idle) is counted likewise from its decision until its joiner has joined it (the C library and the
 * sanitizer tear a thread down after its function returns, and may free then): fork's prepare joins it
 * itself between raising the flag and waiting. No lock is held across the wait, so the gate adds no
 * lock order (creators hold qlock, the watchdog's lock or the arena lock while starting a thread).
 * Both sides store then load with seq_cst (store buffering): either the creator sees `forking`, or the
 * prepare sees its count. */
static _Atomic unsigned starting;
static _Atomic bool forking;

typedef struct {
    void *(*fn)(void *);
    void *arg;
    _Atomic int entered; /* set by the new thread once it has read fn and arg; the record is then gone */
} sys_start_t;

static void *sys_thread_entry(void *p) {
    sys_start_t *s = p;
    void *(*fn)(void *) = s->fn;
    void *arg = s->arg;
    atomic_store_explicit(&s->entered, 1, memory_order_release);
    return fn(arg);
}

/* Sleeps a little, yielding first (a thread start takes microseconds). */
static void sys_start_pause(unsigned spins) {
    if (spins < 64) sched_yield();
    else nanosleep(&(struct timespec){.tv_nsec = 50 * 1000}, NULL);
}

int _ouro_sys_thread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg) {
    if (_ouro_fault_due(&thread_countdown)) return EAGAIN;
    atomic_fetch_add(&starting, 1);
    if (atomic_load(&forking)) {
        atomic_fetch_sub(&starting, 1);
        return EINTR;
    }
    sys_start_t s = {.fn = fn, .arg = arg, .entered = 0};
    int rc = pthread_create(t, attr, sys_thread_entry, &s);
    for (unsigned spins = 0; rc == 0 && !atomic_load_explicit(&s.entered, memory_order_acquire); spins++)
        sys_start_pause(spins);
    atomic_fetch_sub(&starting, 1);
    return rc;
}

bool _ouro_sys_thread_leave_begin(void) {
    atomic_fetch_add(&starting, 1);
    if (!atomic_load(&forking)) return true;
    atomic_fetch_sub(&starting, 1);
    return false;
}

void _ouro_sys_thread_leave_end(void) { atomic_fetch_sub(&starting, 1); }

void _ouro_sys_thread_atfork_begin(void) { atomic_store(&forking, true); }

void _ouro_sys_thread_atfork_wait(void) {
    for (unsigned spins = 0; atomic_load(&starting) != 0; spins++) sys_start_pause(spins);
}

void _ouro_sys_thread_atfork_release(bool child) {
    if (child) atomic_store(&starting, 0); /* a refused creator may have vanished before its decrement */
    atomic_store(&forking, false);
}

void ouro_debug_fail_getrandom(unsigned long nth) { atomic_store(&random_countdown, nth); }

ssize_t _ouro_sys_getrandom(void *buf, size_t n, unsigned flags) {
    if (_ouro_fault_due(&random_countdown)) {
        errno = ENOSYS;
        return -1;
    }
    return getrandom(buf, n, flags);
}
