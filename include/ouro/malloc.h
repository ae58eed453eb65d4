/* ouro/malloc.h — the drop-in malloc (libouro-malloc.so / libouro-malloc.a): what it adds to the C
 * library's malloc API.
 *
 * libouro-malloc replaces malloc, free, calloc, realloc, reallocarray, posix_memalign, aligned_alloc,
 * memalign, valloc, pvalloc, malloc_usable_size, malloc_trim, malloc_stats and C++'s operator new and
 * delete with ouro's allocator (LD_PRELOAD, or linked before the C library). It holds its own instance of
 * ouro's allocator layer only: the functions below describe that instance, whatever libouro a program
 * also links (whose ouro_alloc_stats describe libouro's heaps, not malloc's). They are defined by
 * libouro-malloc, not by libouro: a program that may run without the preload looks them up with
 * dlsym(RTLD_DEFAULT, "ouro_malloc_stats"). It is built hardened (encoded free lists, double frees
 * fatal) unless -Dhardened=false. See docs/alloc.md, "Drop-in malloc". */
#ifndef OURO_MALLOC_H
#define OURO_MALLOC_H

#include "ouro/alloc.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when p lies in memory of malloc's ouro heaps (an arena or a dedicated mapping), else 0. */
int ouro_malloc_owns(const void *p);

/* ouro_alloc_stats, ouro_alloc_stats_json and ouro_alloc_dump of malloc's heaps. */
int ouro_malloc_stats(ouro_alloc_stats_t *out);
int ouro_malloc_stats_json(FILE *out);
int ouro_malloc_dump(FILE *out);

/* ouro_alloc_collect for malloc's heaps (malloc_trim calls it too): bytes returned to the OS. */
size_t ouro_malloc_collect(void);

#ifdef __cplusplus
}
#endif
#endif /* OURO_MALLOC_H */
