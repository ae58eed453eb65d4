/* core/mem.c — the library's own bookkeeping allocations (malloc, calloc, realloc of the C library)
 * and fault injection for them and for the OS layer.
 *
 * ouro's internal records (thread records, refcount queue chunks, the collector's work space, ...)
 * come from the C library, never from ouro's own heaps, whose slow paths reach safepoints. They all go
 * through _ouro_sys_malloc/calloc/realloc so that a test can make the nth of them fail
 * (ouro_debug_fail_malloc) and show that every caller copes with NULL. */
#include "core/atomic.h"
#include "core/debug.h"

#include <stdlib.h>

bool _ouro_fault_due(_Atomic unsigned long *countdown) {
    unsigned long n = ouro_load_relaxed(countdown);
    while (n != 0) {
        if (atomic_compare_exchange_weak(countdown, &n, n - 1)) return n == 1;
    }
    return false;
}

/* The allocation that brings this counter to 0 fails (ouro_debug_fail_malloc). */
static _Atomic unsigned long malloc_countdown;

void ouro_debug_fail_malloc(unsigned long nth) { atomic_store(&malloc_countdown, nth); }

void *_ouro_sys_malloc(size_t n) { return _ouro_fault_due(&malloc_countdown) ? NULL : malloc(n); }

void *_ouro_sys_calloc(size_t n, size_t size) { return _ouro_fault_due(&malloc_countdown) ? NULL : calloc(n, size); }

void *_ouro_sys_realloc(void *p, size_t n) { return _ouro_fault_due(&malloc_countdown) ? NULL : realloc(p, n); }
