/* core/leak.c — OURO_LEAK_CHECK: at process exit, what ouro's heaps still hold.
 *
 * LeakSanitizer and memcheck's leak check see ouro's pools as mmap'd memory, not as blocks (LSan
 * never; memcheck only in -Dvalgrind=true builds, and only blocks nobody points to), so a block or an
 * object a program forgot to free is invisible to them. With OURO_LEAK_CHECK set (to anything but "" or
 * "0") in the environment at exit, an exit handler (registered with atexit when the library loads:
 * after main returns or exit() is called; not on _exit() or a signal) prints to stderr, without
 * allocating from ouro:
 *
 *   ouro: leak check: N blocks (B bytes) live at exit, M objects
 *   ouro: leak check:   class 48 bytes: 3 blocks (144 bytes)
 *   ouro: leak check:   large: 1 blocks (65536 bytes)
 *   ouro: leak check:   type float: 2 objects live (5 made, 3 freed)
 *
 * Objects count among the blocks too (an object is a block of its class). Blocks freed by another
 * thread and not yet collected by the owner count as live (ouro_alloc_stats' rule): the check first
 * collects the exiting thread's. Immortal objects and what ouro keeps for itself (interned strings, the
 * small ints' table ...) are listed like anything else: compare with a run that leaks nothing.
 * OURO_LEAK_CHECK=exit also makes the exit status 23 (LeakSanitizer's) when any object is live; the
 * default leaves the status alone. */
#include "core/debug.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LEAK_MAX_TYPES 256

/* Prints the report; returns the number of live objects. */
static size_t leak_report(void) {
    ouro_alloc_collect();
    ouro_alloc_stats_t st;
    if (ouro_alloc_stats(&st) != 0) return 0;
    static ouro_type_stats_entry types[LEAK_MAX_TYPES]; /* static: no allocation at exit */
    size_t ntypes = ouro_type_stats_all(types, LEAK_MAX_TYPES);
    if (ntypes == (size_t)-1) ntypes = 0;
    if (ntypes > LEAK_MAX_TYPES) ntypes = LEAK_MAX_TYPES;
    size_t blocks = st.large_blocks, bytes = st.large_bytes, objects = 0;
    for (size_t c = 0; c < st.nclasses; c++) {
        blocks += st.classes[c].blocks_in_use;
        bytes += st.classes[c].blocks_in_use * st.classes[c].block_size;
    }
    for (size_t i = 0; i < ntypes; i++) objects += types[i].stats.live;
    _ouro_warn("leak check: %zu blocks (%zu bytes) live at exit, %zu objects", blocks, bytes, objects);
    for (size_t c = 0; c < st.nclasses; c++)
        if (st.classes[c].blocks_in_use)
            _ouro_warn("leak check:   class %zu bytes: %zu blocks (%zu bytes)", st.classes[c].block_size,
                       st.classes[c].blocks_in_use, st.classes[c].blocks_in_use * st.classes[c].block_size);
    if (st.large_blocks) _ouro_warn("leak check:   large: %zu blocks (%zu bytes)", st.large_blocks, st.large_bytes);
    for (size_t i = 0; i < ntypes; i++)
        if (types[i].stats.live)
            _ouro_warn("leak check:   type %s: %zu objects live (%zu made, %zu freed)",
                       types[i].type->name ? types[i].type->name : "?", types[i].stats.live, types[i].stats.allocs,
                       types[i].stats.frees);
    return objects;
}

static void leak_check_at_exit(void) {
    const char *mode = getenv("OURO_LEAK_CHECK"); /* read now: a program (or a test's child) may set it late */
    if (!mode || !*mode || strcmp(mode, "0") == 0) return;
    size_t objects = leak_report();
    if (objects && strcmp(mode, "exit") == 0) _exit(23);
}

void _ouro_leak_check_init(void) { atexit(leak_check_at_exit); }
