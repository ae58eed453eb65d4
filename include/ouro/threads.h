/* ouro/threads.h — threads: attach and detach, offline sections, safepoints, stop-the-world.
 *
 * A thread that uses ouro's objects attaches (or is attached on first use); while attached it is
 * *online* — it may touch the heap — except inside offline sections around blocking calls. Online
 * threads must reach a safepoint regularly (every allocation slow path is one; long loops call
 * ouro_safepoint()): a stop of the world waits for every online thread to reach one, where it parks
 * until the world is started again. Built on liburcu's QSBR flavour: a safepoint is a quiescent state.
 * Time-to-safepoint contract and the state machine: docs/threads.md. */
#ifndef OURO_THREADS_H
#define OURO_THREADS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Run-time configuration (ouro_init). Fields left 0 take their defaults; OURO_* environment
 * variables override the defaults (not explicit values): OURO_STOP_WARN_MS. */
typedef struct ouro_config {
    size_t size;             /* sizeof(ouro_config), for compatibility checks; 0 means "current" */
    unsigned stop_warn_ms;   /* a stop that waits longer prints who has not reached a safepoint; 1000 */
} ouro_config;

/* Starts the runtime with cfg (NULL: defaults). Optional: the first attach starts it with defaults.
 * The same configuration again is accepted; after ouro_fini() a new one may be given. Returns 0, or -1
 * with OURO_ERR_STATE when it already runs with another configuration, or OURO_ERR_INVALID for a bad
 * config. */
int ouro_init(const ouro_config *cfg);

/* Stops the runtime: detaches the calling thread, then runs what is deferred and stops the reclaimer
 * thread. -1 / OURO_ERR_STATE, with nothing changed, while other threads are attached, from a deferred
 * callback, or when the caller holds a stop. A later attach, allocation or deferral starts it again. */
int ouro_fini(void);

/* Attaches the calling thread (idempotent: 0 when attached already). The thread is online when it
 * returns. A thread that exits attached is detached by a thread-exit hook. -1 / OURO_ERR_NOMEM, or
 * OURO_ERR_STATE when the thread holds a stop of the world (attach before stopping it). */
int ouro_thread_attach(void);

/* Detaches the calling thread (idempotent): runs the modules' exit hooks (its heap is abandoned),
 * then unregisters it. Must not be called inside an offline section or while holding a stop. */
int ouro_thread_detach(void);

/* Names the calling (attached) thread for diagnostics (at most 31 bytes are kept). */
int ouro_thread_set_name(const char *name);

/* Offline sections around blocking calls (CPython's detach/attach): the thread promises not to touch
 * ouro objects until ouro_offline_end(). They nest. Returns 0, or -1 / OURO_ERR_STATE when the thread
 * is not attached (begin) or not offline (end). ouro_offline_end() waits while the world is stopped. */
int ouro_offline_begin(void);
int ouro_offline_end(void);

/* The slow path of ouro_safepoint(): reports a quiescent state and parks while the world is stopped. */
void ouro_safepoint_slow(void);

/* What the inline safepoint compares (not API: set by the library, read only by ouro_safepoint()):
 * liburcu-qsbr's grace-period counter, through a pointer the library sets, and the counter value the
 * calling thread last reported at a slow safepoint (0 before it attaches: never current). So this
 * header needs none of liburcu's headers or symbols. */
extern unsigned long *ouro_safepoint_gp_;
extern __thread unsigned long ouro_safepoint_seen_;

/* A safepoint: a few loads and a compare when there is nothing to do (the fast path of liburcu's
 * rcu_quiescent_state). Call it in long loops of online code; cheap enough for every iteration. */
static inline void ouro_safepoint(void) {
    if (__builtin_expect(__atomic_load_n(ouro_safepoint_gp_, __ATOMIC_RELAXED) != ouro_safepoint_seen_, 0))
        ouro_safepoint_slow();
}

/* Stops the world: returns when every other attached thread is parked or offline, and none can come
 * online until ouro_start_the_world(). One stop at a time: a thread that asks while another stop is
 * pending parks like any other thread, then proceeds. reason is printed by the slow-stop diagnostic.
 * The caller need not be attached. -1 / OURO_ERR_STATE when the caller already holds a stop. */
int ouro_stop_the_world(const char *reason);

/* Restarts the world stopped by the calling thread. -1 / OURO_ERR_STATE when it holds no stop. */
int ouro_start_the_world(void);

/* ---- deferred reclamation (RCU) -------------------------------------------------------------------------
 * A reader is any attached thread between two quiescent states (safepoints, offline sections): a block
 * it reached through a shared pointer stays valid until its next quiescent state, so an updater that
 * unlinks a block frees it with ouro_defer(). */

/* Runs fn(arg) on ouro's reclaimer thread once every thread attached now has passed a quiescent state.
 * Callbacks run in call order, online, with a safepoint between two. Returns 0, or -1 with
 * OURO_ERR_INVALID (fn NULL) or OURO_ERR_NOMEM. */
int ouro_defer(void (*fn)(void *arg), void *arg);

/* Waits (offline) until every callback deferred before the call has run. -1 / OURO_ERR_STATE from a
 * callback or from a thread that holds a stop of the world. */
int ouro_defer_barrier(void);

/* Waits (offline) for a grace period: every thread attached now has passed a quiescent state. -1 /
 * OURO_ERR_STATE from a callback or from a thread that holds a stop of the world. */
int ouro_synchronize(void);

#ifdef __cplusplus
}
#endif
#endif /* OURO_THREADS_H */
