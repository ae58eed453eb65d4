/* alloc/sanitize.h — what AddressSanitizer and Valgrind's memcheck are told about ouro's blocks.
 *
 * Neither tool sees inside ouro's mmap'd pools by itself: to ASan a pool is one big addressable
 * region, to memcheck one big defined one. So the allocator tells them (docs/building.md, "ASan sees
 * ouro blocks" and "Valgrind"):
 *
 *   state of a block          plain pools                    OBJECT / GC pools
 *   ------------------------  -----------------------------  ------------------------------------------
 *   never carved, or free     all poisoned                   header (bytes 0..31) addressable, rest
 *                                                            poisoned
 *   handed out (size bytes)   [0, size) addressable;         the same (size >= 32 for objects)
 *                             [size, end) poisoned: the
 *                             redzone (a one-byte overflow
 *                             is reported)
 *
 * Why object headers stay addressable: lock-free readers may load a freed object's refcount words
 * (core/objimpl.h's try-incref reads words 0..2), the exit walk reads word 0 of every carved block and
 * the collector's pool walks and stale young-list entries read gc_bits (word 1) — "object memory stays
 * object memory while it is online". In an object pool the 32 header bytes at every block boundary of
 * its class are addressable for as long as the pool serves that class; the rest of a free object is
 * poisoned.
 *
 * Sanitized builds (OURO_SAN) serve every request from a block of size + OURO_REDZONE bytes at least
 * and keep the requested size in the block's last word (inside the poisoned redzone):
 * ouro_usable_size() returns it, like malloc_usable_size() under ASan, so a program that fills its
 * usable size stays inside the addressable part.
 *
 * The allocator's own accesses to poisoned memory: link words are read with ouro_san_peek() (ASan
 * does not instrument it; memcheck's error reporting is off around it) and written with the block
 * opened and closed around the store (ouro_block_set_free_link). A block is closed (poisoned) before
 * it is published on a shared list, so a thread that pops it never races with a late poisoning.
 *
 * Every helper is an empty inline function in other builds: zero cost when not sanitizing. */
#ifndef OURO_ALLOC_SANITIZE_H
#define OURO_ALLOC_SANITIZE_H
#ifndef OURO_BUILD_CORE
#error "alloc/sanitize.h is internal to libouro"
#endif

#include "ouro/config.h"

#include <stddef.h>
#include <stdint.h>

#if defined(__SANITIZE_ADDRESS__)
#define OURO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OURO_ASAN 1
#endif
#endif
#ifndef OURO_ASAN
#define OURO_ASAN 0
#endif

#if OURO_ASAN
#include <sanitizer/asan_interface.h>
#endif
#if OURO_VALGRIND
#include <valgrind/memcheck.h>
#endif

/* 1 when a memory checker is told about blocks (ASan detected, or -Dvalgrind=true). */
#define OURO_SAN (OURO_ASAN || OURO_VALGRIND)
/* Bytes every request is padded with in sanitized builds: the poisoned redzone (its last word holds the
 * requested size). */
#define OURO_REDZONE (OURO_SAN ? 16 : 0)
/* The object header bytes that stay addressable in a free object block (see above). */
#define OURO_SAN_HEADER 32

/* [p, p + n) may not be touched (ASan: poisoned; memcheck: no access). */
static inline void ouro_san_poison(const void *p, size_t n) {
#if OURO_ASAN
    __asan_poison_memory_region(p, n);
#endif
#if OURO_VALGRIND
    VALGRIND_MAKE_MEM_NOACCESS(p, n);
#endif
    (void)p, (void)n;
}

/* [p, p + n) may be read and written, and holds defined bytes (the allocator's own access). */
static inline void ouro_san_unpoison(const void *p, size_t n) {
#if OURO_ASAN
    __asan_unpoison_memory_region(p, n);
#endif
#if OURO_VALGRIND
    VALGRIND_MAKE_MEM_DEFINED(p, n);
#endif
    (void)p, (void)n;
}

/* [p, p + n) is handed to the program: addressable. memcheck's V bits are left to the malloc-like
 * record that precedes this call (undefined until the program writes). */
static inline void ouro_san_give(const void *p, size_t n) {
#if OURO_ASAN
    __asan_unpoison_memory_region(p, n);
#endif
    (void)p, (void)n;
}

/* A word the allocator owns inside a block that may be poisoned (a free block's link, the redzone's
 * size word, the debug canary): read without a report. */
#if OURO_ASAN
__attribute__((no_sanitize("address")))
#endif
static inline uintptr_t ouro_san_peek(const void *p) {
#if OURO_VALGRIND
    VALGRIND_DISABLE_ERROR_REPORTING;
#endif
    uintptr_t w = __atomic_load_n((const uintptr_t *)p, __ATOMIC_RELAXED);
#if OURO_VALGRIND
    VALGRIND_ENABLE_ERROR_REPORTING;
    VALGRIND_MAKE_MEM_DEFINED(&w, sizeof w); /* a live block's first word may be the program's, unwritten */
#endif
    return w;
}

/* memcheck's malloc-like block records: a use after free is reported with the stacks of the
 * allocation and of the free. */
static inline void ouro_san_malloclike(const void *p, size_t size) {
#if OURO_VALGRIND
    VALGRIND_MALLOCLIKE_BLOCK(p, size, 0, 0);
#endif
    (void)p, (void)size;
}
static inline void ouro_san_freelike(const void *p) {
#if OURO_VALGRIND
    VALGRIND_FREELIKE_BLOCK(p, 0);
#endif
    (void)p;
}
static inline void ouro_san_resizelike(const void *p, size_t old_size, size_t new_size) {
#if OURO_VALGRIND
    VALGRIND_RESIZEINPLACE_BLOCK(p, old_size, new_size, 0);
#endif
    (void)p, (void)old_size, (void)new_size;
}

#endif /* OURO_ALLOC_SANITIZE_H */
