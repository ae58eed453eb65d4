/* tests/malloc/dso.c — a library that test_malloc dlopens: it allocates blocks the program frees and
 * frees blocks the program allocated, across the boundary, with whatever malloc the process has. */
#include <stdlib.h>
#include <string.h>

void *dso_alloc(size_t n, int byte) {
    void *p = malloc(n);
    if (p) memset(p, byte, n);
    return p;
}

void dso_free(void *p) { free(p); }

char *dso_strdup(const char *s) { return strdup(s); }

/* A block grown with realloc inside the library. */
void *dso_grow(void *p, size_t n) { return realloc(p, n); }
