/* core/defer.h — deferred reclamation: the one internal API (implemented in threads/defer.c).
 *
 * A node's callback runs once, on ouro's reclaimer thread, after a grace period that began after the
 * push: every thread attached at the push has since passed a quiescent state (a safepoint, an offline
 * section, detach), so no reference it read from a shared structure before the push survives. The
 * node is caller storage (it must stay valid until the callback runs), so a push never allocates and
 * may be made with any internal lock held. */
#ifndef OURO_CORE_DEFER_H
#define OURO_CORE_DEFER_H
#ifndef OURO_BUILD_CORE
#error "core/defer.h is internal to libouro"
#endif

#include "core/debug.h"

typedef struct ouro_defer_node ouro_defer_node;
struct ouro_defer_node {
    ouro_defer_node *next; /* the reclaimer's queue */
    void (*fn)(void *arg);
    void *arg;
};

/* Queues node (fn and arg set) for after the next grace period. Never blocks on the reclaimer; safe
 * under any internal lock (it takes only the queue's leaf lock). */
OURO_INTERNAL void _ouro_defer_push(ouro_defer_node *node);

#endif /* OURO_CORE_DEFER_H */
