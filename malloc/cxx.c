/* malloc/cxx.c — libouro-malloc's C++ operator new and delete, written in C under their Itanium-ABI names
 * so that the library needs no C++ runtime (docs/alloc.md, "Drop-in malloc").
 *
 * Every form: plain, nothrow, sized delete, std::align_val_t, and the array forms. The throwing forms
 * follow the standard's loop: allocate; on failure call the new-handler (std::get_new_handler()) and
 * retry, or, when none is installed, throw std::bad_alloc. The C++ runtime's pieces for that (the
 * handler's getter, __cxa_allocate_exception, __cxa_throw, std::bad_alloc's vtable, type_info and
 * destructor) are weak references: a C++ program links its runtime (libstdc++ or libc++abi: the same
 * names), so they resolve; in a process without one nothing can catch a C++ exception anyway, and the
 * failure is reported on stderr and aborts. The nothrow forms return NULL without consulting the
 * new-handler (a handler that throws would have to be caught here, which C cannot do). This file is
 * compiled with unwind tables, so the exception unwinds through these frames. */
#include "core/debug.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SHIM_API __attribute__((visibility("default")))

typedef void (*shim_new_handler)(void);

extern shim_new_handler _ZSt15get_new_handlerv(void) __attribute__((weak));
extern void *__cxa_allocate_exception(size_t size) __attribute__((weak));
extern void __cxa_throw(void *exc, void *tinfo, void (*dtor)(void *)) __attribute__((weak, noreturn));
extern char _ZTISt9bad_alloc[] __attribute__((weak)); /* typeinfo for std::bad_alloc */
extern char _ZTVSt9bad_alloc[] __attribute__((weak)); /* vtable for std::bad_alloc */
extern void _ZNSt9bad_allocD1Ev(void *self) __attribute__((weak)); /* std::bad_alloc::~bad_alloc() */


/* Throws std::bad_alloc, or aborts with a message when no C++ runtime is loaded. */
static OURO_COLD _Noreturn void shim_bad_alloc(size_t size, size_t alignment) {
    if (__cxa_allocate_exception && __cxa_throw && _ZTISt9bad_alloc && _ZTVSt9bad_alloc) {
        void **exc = __cxa_allocate_exception(sizeof(void *)); /* std::bad_alloc: its vtable pointer only */
        *exc = _ZTVSt9bad_alloc + 2 * sizeof(void *); /* past offset-to-top and the type_info pointer */
        __cxa_throw(exc, _ZTISt9bad_alloc, _ZNSt9bad_allocD1Ev);
    }
    char buf[160];
    int n = snprintf(buf, sizeof buf,
                     "ouro-malloc: operator new: out of memory (%zu bytes, alignment %zu) and no C++ runtime "
                     "to throw std::bad_alloc\n",
                     size, alignment);
    if (n > 0) {
        ssize_t w = write(STDERR_FILENO, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
        (void)w;
    }
    abort();
}

/* The throwing forms' loop. alignment 0: the default (16). */
static void *shim_new(size_t size, size_t alignment) {
    for (;;) {
        void *p = alignment ? ouro_alloc_aligned(alignment, size) : ouro_alloc(size);
        if (OURO_LIKELY(p != NULL)) return p;
        shim_new_handler h = _ZSt15get_new_handlerv ? _ZSt15get_new_handlerv() : NULL;
        if (!h) shim_bad_alloc(size, alignment ? alignment : 16);
        h();
    }
}

/* std::align_val_t must be a power of two; anything else is the caller's undefined behaviour: treated
 * as a failure. */
static void *shim_new_aligned(size_t size, size_t alignment) {
    if (alignment == 0 || (alignment & (alignment - 1))) shim_bad_alloc(size, alignment);
    return shim_new(size, alignment);
}

static void *shim_new_nothrow(size_t size, size_t alignment) {
    if (alignment & (alignment - 1)) return NULL;
    return alignment ? ouro_alloc_aligned(alignment, size) : ouro_alloc(size);
}

/* operator new(size_t), new[](size_t) */
SHIM_API void *_Znwm(size_t size) { return shim_new(size, 0); }
SHIM_API void *_Znam(size_t size) { return shim_new(size, 0); }
/* operator new(size_t, const std::nothrow_t &), new[] */
SHIM_API void *_ZnwmRKSt9nothrow_t(size_t size, const void *nt) { (void)nt; return shim_new_nothrow(size, 0); }
SHIM_API void *_ZnamRKSt9nothrow_t(size_t size, const void *nt) { (void)nt; return shim_new_nothrow(size, 0); }
/* operator new(size_t, std::align_val_t), new[] */
SHIM_API void *_ZnwmSt11align_val_t(size_t size, size_t al) { return shim_new_aligned(size, al); }
SHIM_API void *_ZnamSt11align_val_t(size_t size, size_t al) { return shim_new_aligned(size, al); }
/* operator new(size_t, std::align_val_t, const std::nothrow_t &), new[] */
SHIM_API void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t size, size_t al, const void *nt) { (void)nt; return shim_new_nothrow(size, al); }
SHIM_API void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t size, size_t al, const void *nt) { (void)nt; return shim_new_nothrow(size, al); }

/* Every delete is free (which also takes pointers ouro did not hand out: malloc/shim.c). */
SHIM_API void _ZdlPv(void *p) { free(p); }
SHIM_API void _ZdaPv(void *p) { free(p); }
SHIM_API void _ZdlPvm(void *p, size_t size) { (void)size; free(p); }
SHIM_API void _ZdaPvm(void *p, size_t size) { (void)size; free(p); }
SHIM_API void _ZdlPvRKSt9nothrow_t(void *p, const void *nt) { (void)nt; free(p); }
SHIM_API void _ZdaPvRKSt9nothrow_t(void *p, const void *nt) { (void)nt; free(p); }
SHIM_API void _ZdlPvSt11align_val_t(void *p, size_t al) { (void)al; free(p); }
SHIM_API void _ZdaPvSt11align_val_t(void *p, size_t al) { (void)al; free(p); }
SHIM_API void _ZdlPvmSt11align_val_t(void *p, size_t size, size_t al) { (void)size; (void)al; free(p); }
SHIM_API void _ZdaPvmSt11align_val_t(void *p, size_t size, size_t al) { (void)size; (void)al; free(p); }
SHIM_API void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t al, const void *nt) { (void)al; (void)nt; free(p); }
SHIM_API void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t al, const void *nt) { (void)al; (void)nt; free(p); }
