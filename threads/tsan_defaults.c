/* threads/tsan_defaults.c — ThreadSanitizer's defaults for a program that uses ouro.
 *
 * Compiled into the test and stress binaries, and installed for embedders as lib/ouro-tsan-defaults.o
 * (`./zigw build install-tsan`; docs/embedding.md, "Hunting races in your server with TSan"): TSan calls
 * these two functions at start-up when the program defines them. Not part of the library: a program
 * has one of each, and one that defines its own passes TSAN_OPTIONS instead. */
#include "ouro/config.h"

#if OURO_TSAN
/* Reports TSan should not make: threads/tsan.supp as written, comments and reasons included (TSan's
 * parser skips the comment lines). build.zig turns the file into the string literal of tsan_supp.inc. */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void) {
    return
#include "tsan_supp.inc"
        ;
}

/* Options TSan reads at start-up. die_after_fork=0: a forked child of a multi-threaded process
 * starts threads of its own (the stop watchdog, the reclaimer), which TSan refuses by default; ouro's
 * fork handlers stop the world around fork(), so no other thread of ouro's is inside ouro (or the
 * allocator) when the process is copied. */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void) { return "die_after_fork=0"; }
#endif
