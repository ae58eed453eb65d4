/* alloc/os.c — the OS layer: aligned mappings, purging, fault injection, and the address map that
 * tells whether an address lies in one of ouro's mappings. */
#include "alloc/internal.h"

#include <errno.h>
#include <sys/mman.h>

ouro_alloc_counters _ouro_counters;

/* Fault injection (ouro_debug_fail_os_map): the mapping that brings this counter to 0 fails. */
#define fail_countdown _ouro_fault_countdown[OURO_FAULT_OS_MAP]

void ouro_debug_fail_os_map(unsigned long nth) { atomic_store(&fail_countdown, nth); }


static void os_account_mapped(size_t size) {
    size_t now = ouro_fetch_add_relaxed(&_ouro_counters.bytes_mapped, size) + size;
    size_t peak = ouro_load_relaxed(&_ouro_counters.bytes_mapped_peak);
    while (now > peak && !atomic_compare_exchange_weak(&_ouro_counters.bytes_mapped_peak, &peak, now)) {
    }
    ouro_fetch_add_relaxed(&_ouro_counters.os_map_calls, 1);
}

void *_ouro_os_map_aligned(size_t size, size_t align) { return _ouro_os_map_aligned_at(size, align, 0); }

void *_ouro_os_map_aligned_at(size_t size, size_t align, size_t at) {
    if (_ouro_fault_due(&fail_countdown)) {
        ouro_fetch_add_relaxed(&_ouro_counters.os_map_failures, 1);
        _ouro_err_set(OURO_ERR_NOMEM, "out of memory: mapping %zu bytes failed (injected)", size);
        return NULL;
    }
    /* Over-map by align, then trim both ends to the range whose byte `at` is aligned. */
    if (size > SIZE_MAX - align) {
        ouro_fetch_add_relaxed(&_ouro_counters.os_map_failures, 1);
        _ouro_err_set(OURO_ERR_NOMEM, "out of memory: mapping %zu bytes aligned to %zu", size, align);
        return NULL;
    }
    size_t span = size + align;
    char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) {
        int e = errno;
        ouro_fetch_add_relaxed(&_ouro_counters.os_map_failures, 1);
        _ouro_err_set(OURO_ERR_NOMEM, "out of memory: mapping %zu bytes failed (errno %d)", size, e);
        return NULL;
    }
    char *p = (char *)((((uintptr_t)raw + at + align - 1) & ~(uintptr_t)(align - 1)) - at);
    if (p > raw) munmap(raw, (size_t)(p - raw));
    char *end = p + size, *raw_end = raw + span;
    if (raw_end > end) munmap(end, (size_t)(raw_end - end));
    os_account_mapped(size);
    return p;
}

void _ouro_os_unmap(void *p, size_t size) {
    if (munmap(p, size) != 0) _ouro_fatal("munmap(%p, %zu) failed", p, size);
    ouro_fetch_sub_relaxed(&_ouro_counters.bytes_mapped, size);
    ouro_fetch_add_relaxed(&_ouro_counters.bytes_returned, size);
}

void _ouro_os_purge(void *p, size_t size) {
    if (madvise(p, size, MADV_DONTNEED) != 0) return; /* advisory: keeping the pages is harmless */
    ouro_fetch_add_relaxed(&_ouro_counters.bytes_returned, size);
}

/* ---- address map (alloc/internal.h describes it) ---------------------------------------------------- */
#define LEAF_BITS OURO_ADDRMAP_LEAF_BITS

_Atomic(ouro_addrmap_leaf *) _ouro_addrmap_root[1u << OURO_ADDRMAP_ROOT_BITS];

void _ouro_addrmap_set(void *chunk, size_t size, unsigned kind) {
    for (uintptr_t a = (uintptr_t)chunk; a < (uintptr_t)chunk + size; a += OURO_ARENA_SIZE) {
        uintptr_t c = a >> OURO_ARENA_SHIFT;
        _Atomic(ouro_addrmap_leaf *) *slot = &_ouro_addrmap_root[c >> LEAF_BITS];
        ouro_addrmap_leaf *leaf = ouro_load_relaxed(slot);
        if (leaf == NULL) {
            leaf = mmap(NULL, sizeof *leaf, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (leaf == MAP_FAILED) _ouro_fatal("cannot map the address map (%zu bytes)", sizeof *leaf);
            ouro_store_release(slot, leaf); /* pairs with the acquire in _ouro_addrmap_get() */
        }
        ouro_store_relaxed(&leaf->chunk[c & ((1u << LEAF_BITS) - 1)], (uint8_t)kind);
        if (kind == OURO_CHUNK_HUGE_HEAD) kind = OURO_CHUNK_HUGE_BODY;
    }
}
