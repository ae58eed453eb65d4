/* core/atomic.h — the one atomics shim. Memory order is in the name, so a grep finds every edge;
 * every acquire/release use names its partner in a comment at the call site. */
#ifndef OURO_CORE_ATOMIC_H
#define OURO_CORE_ATOMIC_H
#ifndef OURO_BUILD_CORE
#error "core/atomic.h is internal to libouro"
#endif

#include <stdatomic.h>

#define ouro_load_relaxed(p) atomic_load_explicit((p), memory_order_relaxed)
#define ouro_load_acquire(p) atomic_load_explicit((p), memory_order_acquire)
#define ouro_store_relaxed(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define ouro_store_release(p, v) atomic_store_explicit((p), (v), memory_order_release)
#define ouro_xchg_acq_rel(p, v) atomic_exchange_explicit((p), (v), memory_order_acq_rel)
#define ouro_fetch_add_relaxed(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)
#define ouro_fetch_sub_relaxed(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_relaxed)
/* CAS: on failure *expected is reloaded with relaxed order. */
#define ouro_cas_weak_release(p, expected, desired)                                               \
    atomic_compare_exchange_weak_explicit((p), (expected), (desired), memory_order_release,        \
                                          memory_order_relaxed)
#define ouro_cas_acq_rel(p, expected, desired)                                                     \
    atomic_compare_exchange_strong_explicit((p), (expected), (desired), memory_order_acq_rel,       \
                                            memory_order_relaxed)

/* A full fence: the store-buffering pattern (each side writes one word, then reads the other's) needs
 * it on both sides; every use names the other side. */
#define ouro_fence_seq_cst() atomic_thread_fence(memory_order_seq_cst)

/* A counter written by one thread only and read by others: the owner's increment is a plain load and
 * store (no lock prefix), readers see some recent value. */
#define ouro_owner_add(p, v) ouro_store_relaxed((p), ouro_load_relaxed(p) + (v))

#endif /* OURO_CORE_ATOMIC_H */
