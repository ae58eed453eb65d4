/* tests/tsan_options.c — ThreadSanitizer settings compiled into the test and stress binaries.
 *
 * Suppressions name liburcu internals only, each with the reason; ouro's own code is never
 * suppressed. The happens-before edges ouro relies on are expressed with C11 atomics in ouro's code
 * (docs/threads.md, "TSan"), so what liburcu does invisibly is not needed for TSan to see them. */
#include "ouro/config.h"

#if OURO_TSAN
/* Reports TSan should not make. */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void) {
    return
        /* liburcu-qsbr's header-inlined grace-period wake-up (urcu/static/urcu-qsbr.h) reads and resets
         * urcu_qsbr_gp.futex with volatile accesses (uatomic_read / uatomic_set) ordered by inline-asm
         * fences, which TSan does not model; liburcu's own design makes the wake-up race-free. */
        "race:urcu_qsbr_wake_up_gp\n"
        /* liburcu-cds's rculfhash hands a resize request to its workqueue thread: the work item is
         * malloc'd inside cds_lfht_add_unique (on the adding thread) and freed by the worker after a
         * lock-free wfcqueue and futex hand-off written in inline asm, which TSan does not see. Only
         * the libc calls liburcu-cds itself makes (that malloc and free) are ignored: ouro's callbacks
         * run from it (the intern table's match function) stay instrumented and checked, and the
         * edges ouro relies on are its own release/acquire pairs (core/str.c). The functions are
         * static in the stripped library (no name to match), hence the library. */
        "called_from_lib:liburcu-cds.so\n";
}

/* Options TSan reads at start-up. die_after_fork=0: a forked child of a multi-threaded process
 * starts threads of its own (the stop watchdog, the reclaimer), which TSan refuses by default; ouro's
 * fork handlers stop the world around fork(), so no other thread of ouro's is inside ouro (or the
 * allocator) when the process is copied. */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void) { return "die_after_fork=0"; }
#endif
