/* model/remote_free.pml — the allocator's remote-free claim/inbox protocol (alloc/heap.c, alloc/arena.c).
 *
 * WHAT IT MODELS. One block pool with NB = N blocks and N threads (N = 2 or 3), each with its own heap
 * (heap id = thread id; heaps are reused, never unmapped). Thread 0's heap owns the pool at the start
 * (its current pool) and each thread holds one block of it. Each thread then takes up to K steps, each
 * one of: free a block it holds (ouro_free: local when pool->heap is its heap, else
 * _ouro_pool_free_remote, whose claim winner runs pool_notify, which may collect the abandoned inbox);
 * hand a block to another thread; as the owner: allocate from the local free list, exhaust the current
 * pool (_ouro_pool_collect, then heap_link FULL), make a partial pool current, collect its inbox
 * (heap_inbox_collect + heap_settle, which releases an emptied listed pool to the arena), abandon its
 * heap (heap_abandon, at thread exit); as anyone: adopt the abandoned pool (_ouro_arena_adopt +
 * _ouro_pool_unclaim + _ouro_pool_collect) or collect the abandoned inbox (ouro_alloc_collect). At the
 * end each thread frees what it still holds.
 *
 * ABSTRACTION. The xfree word is (xmask, xclaim): the set of blocks on the remote-free list and the
 * claim bit, compared and swapped together as the one word they are. The list's order is irrelevant:
 * it is only ever pushed one block at a time (by a CAS whose link store is published by that CAS) and
 * taken whole (exchange or CAS). The local free list is the set lf. Each atomic operation on xfree or
 * on an inbox is one step; relaxed loads are their own steps; the owner's operations on its own fields
 * (owner-only in the code) are one step each. A heap's inbox holds at most this one pool, so it is a
 * bit, and heap_inbox_push's CAS loop is one step. Memory orders: every xfree and inbox access is an
 * RMW on one word (one modification order, docs/alloc.md) and every other shared field is written
 * under the claim or arena_lock, so the interleaving model is exact for them. Left out: block
 * encoding, poison and double-free detection (debug checks), lazy carving (all blocks carved), large
 * blocks, a released pool's reuse (a new pool, initialised under arena_lock) and the deferred return
 * of object pools (after release nobody may touch the pool: asserted).
 *
 * PROPERTIES. Assertions: a block is freed only by its holder and spliced only from the remote list
 * (no double free); a splice never takes more blocks than are in use; a pool is released only with
 * every block free and the claim held; a notifier never touches a released pool; a pool is on at most
 * one inbox, and only on its owner's; the abandoning thread's inbox is empty when it is done; no
 * deadlock. At the end (every thread done): no block is lost — every block is free locally or on the
 * remote list, a pending remote list is on its owner's inbox, a set claim means the pool is released
 * or on an inbox. The claim invariant: a remote list is never pending without the claim bit (asserted
 * after every step that writes xfree, the only steps that can break it). */

#ifndef N
#define N 2
#endif
#define NB N
#ifndef K
#define K 3
#endif

#define LF (N)          /* holder: on the local free list */
#define XF (N + 1)      /* holder: on the remote-free list (xfree) */
#define AB (N)          /* heap: _ouro_heap_abandoned */
#define NONE (N + 1)    /* heap: _ouro_heap_none (released) */
#define CUR 0           /* flags: the heap's current pool */
#define PARTIAL 1
#define FULL 2
#define NOLIST 0        /* alist: on no abandoned list */
#define AVAIL 1
#define AFULL 2

byte holder[NB];     /* ghost: where each block is */
byte xmask;          /* xfree: the remote-free list */
bit xclaim;          /* xfree: OURO_XFREE_CLAIMED */
byte lf;             /* pool->free (set of blocks) */
byte used;           /* pool->used */
byte heap;           /* pool->heap */
byte flags;          /* pool->flags */
byte alist;          /* on the arena's abandoned_avail / abandoned_full list */
bit released;        /* given back to the arena */
bit inbox[N + 1];    /* the pool is on heap h's inbox (h = AB: the abandoned sentinel's) */
byte arena_lock;     /* 0 free, else holder + 1 */
byte done;
bit fin[N];          /* the thread has ended (takes no more blocks) */

#define BIT(b) (1 << (b))
#if N == 2
#define HELD_ANY(t) (holder[0] == t || holder[1] == t)
#define ON_INBOXES (inbox[0] + inbox[1] + inbox[2])
#elif N == 3
#define HELD_ANY(t) (holder[0] == t || holder[1] == t || holder[2] == t)
#define ON_INBOXES (inbox[0] + inbox[1] + inbox[2] + inbox[3])
#else
#error "N is 2 or 3"
#endif

/* The claim invariant's first half, asserted after every step that writes xfree (the only steps that
 * can falsify it): a remote list is never pending without the claim bit. */
#define PENDING_CLAIMED assert(xmask == 0 || xclaim)

/* b := a block whose holder is w, chosen nondeterministically (the caller knows there is one) */
inline pick(w) {
    if
    :: holder[0] == w -> b = 0
    :: holder[1] == w -> b = 1
#if NB == 3
    :: holder[2] == w -> b = 2
#endif
    fi
}

/* pool_splice: the taken list m onto the local free list; used -= its length */
inline splice(m) {
    atomic {
        n = 0; j = 0;
        do
        :: j < NB -> if :: (m & BIT(j)) -> assert(holder[j] == XF); holder[j] = LF; n++ :: else fi; j++
        :: else -> break
        od;
        assert(n <= used);                 /* "holds %u blocks but only %u are in use" */
        lf = lf | m; used = used - n; j = 0; n = 0
    }
}

/* _ouro_pool_try_claim: CAS xfree 0 -> CLAIMED */
inline try_claim() {
    atomic { if :: xmask == 0 && !xclaim -> xclaim = 1; ok = 1 :: else -> ok = 0 fi; PENDING_CLAIMED }
}

/* _ouro_arena_release_pool_locked / heap_settle's release (caller holds the claim) */
inline release() {
    atomic {
        assert(used == 0 && xmask == 0 && xclaim && !released);
        j = 0;
        do :: j < NB -> assert(holder[j] == LF); j++ :: else -> break od;
        released = 1; heap = NONE; flags = CUR; alist = NOLIST; j = 0
    }
}

/* pool_notify: the claim winner puts the pool on its owner's inbox */
inline notify() {
    atomic { assert(!released); h = heap };               /* relaxed load of pool->heap (under the claim) */
    atomic { assert(!released && h != NONE && ON_INBOXES == 0); inbox[h] = 1 }   /* heap_inbox_push */
    if
    :: h == AB ->
        atomic { if :: arena_lock == 0 -> arena_lock = me + 1; got = 1 :: else -> got = 0 fi }   /* trylock */
        if
        :: got -> collect_abandoned(); atomic { arena_lock = 0; got = 0 }
        :: else
        fi
    :: else
    fi;
    h = 0
}

/* _ouro_pool_unclaim: CAS CLAIMED -> 0, else hand the claim to the inbox */
inline unclaim() {
    atomic { assert(xclaim); if :: xmask == 0 -> xclaim = 0; ok = 1 :: else -> ok = 0 fi; PENDING_CLAIMED }
    if :: !ok -> notify() :: else fi; ok = 0
}

/* _ouro_pool_take_inbox_claim: exchange xfree -> 0, splice */
inline take_inbox_claim() {
    atomic { m = xmask; xmask = 0; xclaim = 0; PENDING_CLAIMED };
    splice(m); m = 0
}

/* _ouro_pool_collect: take the list, keep the claim bit */
inline pool_collect() {
    if
    :: xmask != 0 -> atomic { m = xmask; xmask = 0; PENDING_CLAIMED }; splice(m); m = 0
    :: else
    fi
}

/* heap_settle (owner) */
inline settle() {
    if
    :: flags == CUR -> skip
    :: flags != CUR && used == 0 ->
        try_claim();
        if :: ok -> release() :: else fi; ok = 0       /* heap_unlink; _ouro_arena_release_pool */
    :: flags == FULL && used != 0 && lf != 0 -> flags = PARTIAL
    :: else
    fi
}

/* heap_inbox_collect(h = me) */
inline inbox_collect(settling) {
    atomic { got = inbox[me]; inbox[me] = 0 };          /* heap_inbox_take: exchange */
    if
    :: got -> got = 0; take_inbox_claim(); if :: settling -> settle() :: else fi
    :: else
    fi
}

/* _ouro_arena_collect_abandoned_locked (caller holds arena_lock) */
inline collect_abandoned() {
    atomic { got = inbox[AB]; inbox[AB] = 0 };
    if
    :: got ->
        got = 0;
        assert(heap == AB);
        take_inbox_claim();
        if
        :: used == 0 ->
            try_claim();
            if :: ok -> release() :: else fi; ok = 0
        :: used != 0 && flags == FULL && lf != 0 -> atomic { alist = AVAIL; flags = PARTIAL }
        :: else
        fi
    :: else
    fi
}

proctype thread(byte me) {
    byte b, h, m, n, j, om, steps;
    bit oc, ok, got;

loop:
    if
    :: steps < K -> steps++
    :: steps == K && HELD_ANY(me) -> atomic { pick(me) }; goto free_block   /* the end: free what it holds */
    :: atomic { steps == K && !HELD_ANY(me) -> fin[me] = 1 }; goto end
    fi;
    if
    :: HELD_ANY(me) -> atomic { pick(me) }; goto free_block
    :: atomic { HELD_ANY(me) && !fin[(me + 1) % N] -> pick(me); holder[b] = (me + 1) % N; b = 0 }   /* hand it over */
    :: heap == me && flags == CUR && lf != 0 ->            /* ouro_pool_pop */
        atomic { pick(LF); holder[b] = me; lf = lf & ~BIT(b); used++; b = 0 }
    :: heap == me && flags == CUR && lf == 0 ->            /* _ouro_heap_alloc_slow: exhausted */
        pool_collect();
        if :: lf == 0 -> flags = FULL :: else fi           /* heap_link FULL */
    :: heap == me && flags == PARTIAL -> flags = CUR       /* heap_unlink from partial: current */
    :: heap == me && inbox[me] -> inbox_collect(1)
    :: heap == me -> goto abandon                         /* thread exit: heap_abandon */
    :: heap == AB -> goto adopt
    :: atomic { arena_lock == 0 -> arena_lock = me + 1 }; /* ouro_alloc_collect */
       collect_abandoned(); arena_lock = 0
    :: skip                                                /* something else */
    fi;
    goto loop;

free_block:   /* ouro_free(b) */
    if
    :: heap == me ->                                       /* the owner's path: ouro_pool_push_local */
        atomic { assert(holder[b] == me); holder[b] = LF; lf = lf | BIT(b); used-- };
        if
        :: flags != CUR && (flags == FULL || used == 0) -> settle()   /* _ouro_heap_free_local_slow */
        :: else
        fi
    :: else ->                                             /* _ouro_pool_free_remote */
rf_load:
        atomic { om = xmask; oc = xclaim };
rf_cas:
        do
        :: atomic {
               if
               :: xmask == om && xclaim == oc ->
                   assert(holder[b] == me && !released);
                   holder[b] = XF; xmask = om | BIT(b); xclaim = 1; ok = 1; PENDING_CLAIMED
               :: else -> om = xmask; oc = xclaim; ok = 0
               fi
           };
           if :: ok -> break :: else fi
        od;
        ok = 0; om = 0;
rf_notify:
        if :: !oc -> notify() :: else fi; oc = 0
    fi;
    b = 0;
    goto loop;

abandon:      /* heap_abandon (thread exit) */
    atomic { arena_lock == 0 -> arena_lock = me + 1 };
ab_claim:
    do
    :: try_claim(); if :: ok -> break :: else fi;
       inbox_collect(0)                                    /* a notifier holds it: collect our inbox */
    od;
    ok = 0;
ab_owner:
    heap = AB;
    if
    :: used == 0 -> release()
    :: else ->
        atomic { if :: lf != 0 -> alist = AVAIL; flags = PARTIAL :: else -> alist = AFULL; flags = FULL fi };
        unclaim()
    fi;
    collect_abandoned();
    atomic { arena_lock = 0; assert(inbox[me] == 0) };
    goto loop;

adopt:        /* _ouro_arena_adopt, then _ouro_pool_unclaim and _ouro_pool_collect */
    atomic { arena_lock == 0 -> arena_lock = me + 1 };
    collect_abandoned();
    if
    :: alist == AVAIL && heap == AB ->
        try_claim();
        if :: ok -> atomic { alist = NOLIST; flags = CUR; heap = me } :: else fi
    :: else -> ok = 0
    fi;
    arena_lock = 0;
    if
    :: ok -> unclaim(); pool_collect()
    :: else
    fi;
    ok = 0;
    goto loop;

end:
    done++
}

init {
    byte i;
    atomic {
        heap = 0; flags = CUR; used = NB; lf = 0;
        i = 0;
        do :: i < NB -> holder[i] = i % N; i++ :: else -> break od;
        i = 0;
        do :: i < N -> run thread(i); i++ :: else -> break od
    }
    done == N;
    /* no block lost */
    atomic {
        i = 0;
        do :: i < NB -> assert(holder[i] == LF || holder[i] == XF); i++ :: else -> break od;
        assert(xmask == 0 || xclaim);
        assert(!xclaim || released || (heap <= AB && inbox[heap] && ON_INBOXES == 1));
        assert(!released || (lf == (1 << NB) - 1 && used == 0));
        assert(arena_lock == 0)
    }
}
