/* model/brc.pml — biased reference counting: the queue and the merge (include/ouro/object.h
 * ouro_incref/ouro_decref, core/object.c).
 *
 * WHAT IT MODELS. One object made by thread 0 (its owner: tid = 1, ref_local = 1, ref_shared INIT) and
 * N threads (N = 2 or 3). Each thread takes up to K steps, each one of: incref (the owner's path when
 * tid is its id, else the atomic add to ref_shared), decref (the owner's path with
 * ouro_decref_local_slow and merge_zero_local; the non-owner's inline CAS and ouro_decref_shared, which
 * queues the object to its owner with brc_queue, or merges it directly when the owner has left its
 * bucket), hand a reference to another thread, and for the owner: merge its queue at a safepoint
 * (ouro_refcount_merge_queued) or exit (brc_thread_exit: the walk that merges what it owns, leaving the
 * bucket, merging the queue). At the end every thread drops the references it holds, and the owner, if
 * it has not exited, reaches one more safepoint once the others are done.
 *
 * ABSTRACTION. ref_shared is the pair (cnt, st) = (ref_shared >> 2, ref_shared & 3), read, compared and
 * swapped as the one word it is; the inline decref's test "(uintptr_t)shared > MERGED && shared !=
 * 1<<2|MERGED" is "cnt != 0 && (cnt, st) != (1, MERGED)". Only the owner writes ref_local and only
 * the owner clears tid from its own id, so the owner's fast paths (load tid, load and store ref_local)
 * are one step each; every atomic of the code is one step and so is every relaxed load and store of the
 * merge (object_merge's loads and stores of ref_local and tid, then its CAS loop). Memory orders: all
 * counting is on ref_shared RMWs (one modification order) or the owner's own fields; the queue is under
 * the bucket mutex. Left out: MAYBE_SHARED and try-incref (they change no transition here: MAYBE_SHARED
 * behaves as INIT), immortality, the allocation that may fail in brc_queue (brc_merge_stopping merges
 * under a stop of the world, checked by stw.pml's exclusion), the grace-period kick that sends owners to
 * safepoints (the model's owner takes a safepoint at its end), thread-id reuse, the fork child and the
 * collector's stopped merges (single-threaded or under a stop).
 *
 * PROPERTIES (assertions). Never freed while referenced: at the free no thread holds a reference and
 * no queue holds one; never freed twice; no decref of a freed object (every decref finds it alive); no
 * underflow (the fatal paths are never taken); a queuer that finds no owner finds the object merged
 * (tid 0). Always freed when the last reference goes: at the end (every thread done, every reference
 * dropped, the owner past a safepoint or its exit) the object is freed and the queue is empty. */

#ifndef N
#define N 2
#endif
#ifndef K
#define K 3
#endif
#define MAXR 3              /* at most this many references at once */

#define LINK 255            /* word 0 of a freed block: the allocator's link, never a thread's id */
#define INIT 0
#define QUEUED 2
#define MERGED 3

byte tid = 1;               /* o->tid: the owner's id (thread t has id t + 1), 0 once merged */
byte rlocal = 1;            /* o->ref_local */
short cnt;                  /* ref_shared >> 2 (may go negative while QUEUED) */
byte sst = INIT;            /* ref_shared & 3 */
bit freed;

byte bucket;                /* the owner's bucket mutex: 0 free, else holder + 1 */
bit inbucket = 1;           /* the owner's record is in its bucket */
byte q;                     /* objects queued to the owner (the queue's chunks, for one object) */

byte refs[N];               /* ghost: references each thread holds */
byte qrefs;                 /* ghost: references the queue holds (the dropped ones) */
bit fin[N];
byte done;

#if N == 2
#define TOTAL (refs[0] + refs[1] + qrefs)
#elif N == 3
#define TOTAL (refs[0] + refs[1] + refs[2] + qrefs)
#else
#error "N is 2 or 3"
#endif

inline dealloc() {
    atomic { assert(!freed); assert(TOTAL == 0); freed = 1; tid = LINK }   /* word 0: a free-list link */
}

/* object_merge(o, extra): count := the true count + extra, state MERGED, tid 0; returns it in count */
inline merge(extra) {
    ml = rlocal;
    rlocal = 0;
    tid = 0;
    atomic { oc = cnt; os = sst };

    do
    :: atomic {
           if
           :: cnt == oc && sst == os ->
               count = oc + ml + extra; cnt = count; sst = MERGED;
               if :: extra < 0 -> assert(qrefs > 0); qrefs-- :: else fi;   /* the queue's reference */
               ok = 1
           :: else -> oc = cnt; os = sst; ok = 0
           fi
       };
       if :: ok -> break :: else fi
    od;
    atomic { ok = 0; ml = 0; oc = 0; os = 0 }
}

proctype thread(byte me) {
    byte steps, u, ml, os, otid, lc;
    short oc, count;
    bit ok, queue;

loop:
    if
    :: steps < K -> steps++
    :: steps == K && refs[me] > 0 -> goto decref            /* the end: drop every reference */
    :: atomic { steps == K && refs[me] == 0 -> fin[me] = 1 }; goto finish
    fi;
    if
    :: refs[me] > 0 && TOTAL < MAXR ->                      /* ouro_incref */
        atomic {
            assert(!freed);
            if :: tid == me + 1 -> rlocal++ :: else -> cnt++ fi;
            refs[me]++
        }
    :: refs[me] > 0 -> goto decref
    :: atomic { refs[me] > 0 && !fin[(me + 1) % N] ->       /* hand the reference to another thread */
                refs[me]--; refs[(me + 1) % N]++ }
    :: me == 0 && inbucket -> goto merge_queued             /* a safepoint's poll hook */
    :: me == 0 && inbucket -> goto exit_hook                /* detach or exit */
    :: skip
    fi;
    goto loop;

decref:       /* ouro_decref */
    atomic { assert(!freed && refs[me] > 0); refs[me]--; otid = tid };
    if
    :: otid == me + 1 ->                                    /* the owner's path */
        atomic { lc = rlocal; otid = 0 };
        if
        :: lc > 1 -> rlocal = lc - 1; lc = 0; goto loop
        :: else
        fi;
        assert(lc != 0);                                    /* ouro_refcount_underflow */
dl_store: rlocal = lc - 1; lc = 0;                          /* ouro_decref_local_slow */
dl_load:  atomic { oc = cnt; os = sst };                    /* merge_zero_local: acquire load */
        if
        :: oc == 0 && os == INIT -> oc = 0; os = 0; dealloc(); goto loop   /* nobody else counted it */
        :: else
        fi;
dl_tid:   tid = 0;
dl_cas:
        do
        :: atomic {
               if
               :: cnt == oc && sst == os -> sst = MERGED; ok = 1
               :: else -> oc = cnt; os = sst; ok = 0
               fi
           };
           if :: ok -> break :: else fi
        od;
        ok = 0; os = 0;
        if :: oc == 0 -> oc = 0; dealloc() :: else -> oc = 0 fi;
        goto loop
    :: else -> otid = 0
    fi;
dn_load:      /* the inline non-owner decrement */
    atomic { oc = cnt; os = sst };
    if
    :: oc != 0 && !(oc == 1 && os == MERGED) ->
dn_cas:
        atomic { if :: cnt == oc && sst == os -> cnt = oc - 1; ok = 1 :: else -> ok = 0 fi };
        if :: ok -> ok = 0; oc = 0; os = 0; goto loop :: else fi
    :: else
    fi;
ds_loop:      /* ouro_decref_shared */
    otid = tid;
ds_load:
    atomic {
        oc = cnt; os = sst;
        queue = (oc == 0 && os == INIT)
    };
    if
    :: queue && otid == 0 -> goto ds_loop                   /* the owner is merging: wait for its CAS */
    :: else
    fi;
    assert(!(os == MERGED && oc < 1));                      /* ouro_refcount_underflow */
ds_cas:
    atomic {
        if
        :: cnt == oc && sst == os ->
            if
            :: queue -> sst = QUEUED; qrefs++               /* the queue keeps the dropped reference */
            :: else -> cnt = oc - 1
            fi;
            ok = 1
        :: else -> ok = 0
        fi
    };
    if :: !ok -> goto ds_loop :: else fi;
    ok = 0;
    if
    :: queue -> queue = 0; oc = 0; os = 0; goto brc_queue
    :: !queue && oc - 1 == 0 && os == MERGED -> oc = 0; os = 0; dealloc()
    :: else -> oc = 0; os = 0
    fi;
    goto loop;

brc_queue:
    atomic { bucket == 0 -> bucket = me + 1 };
    if
    :: inbucket && otid == 1 ->                             /* brc_find_locked found the owner */
bq_push: q++; bucket = 0; otid = 0
    :: else ->                                              /* the owner left: merge directly */
        assert(tid == 0);                                   /* else "decref of a freed object" */
        merge(-1);
        bucket = 0; otid = 0;
        if :: count == 0 -> count = 0; dealloc() :: else -> count = 0 fi
    fi;
    goto loop;

merge_queued: /* ouro_refcount_merge_queued: brc_take_queue, brc_merge_chunks */
    atomic { bucket == 0 -> bucket = me + 1 };
mq_take: atomic { u = q; q = 0; bucket = 0 };
    do
    :: u > 0 -> u--; merge(-1); if :: count == 0 -> dealloc() :: else fi; count = 0
    :: else -> break
    od;
    if :: fin[me] -> goto finish2 :: else -> goto loop fi;

exit_hook:    /* brc_thread_exit */
ex_walk:
    if
    :: tid == me + 1 -> merge(0); if :: count == 0 -> dealloc() :: else fi; count = 0   /* dealloc_pending */
    :: else
    fi;
    atomic { bucket == 0 -> bucket = me + 1 };
ex_leave: inbucket = 0; bucket = 0;
    atomic { bucket == 0 -> bucket = me + 1 };
ex_take: atomic { u = q; q = 0; bucket = 0 };
    do
    :: u > 0 -> u--; merge(-1); if :: count == 0 -> dealloc() :: else fi; count = 0
    :: else -> break
    od;
    if :: fin[me] -> goto finish2 :: else -> goto loop fi;

finish:
    if
    :: me == 0 && inbucket ->                               /* the owner's next safepoint, or its exit */
        done == N - 1;
        if :: goto merge_queued :: goto exit_hook fi
    :: else
    fi;
finish2:
    done++
}

init {
    byte i;
    atomic {
        refs[0] = 1;
        i = 0;
        do :: i < N -> run thread(i); i++ :: else -> break od
    }
    done == N;
    assert(freed && qrefs == 0 && q == 0)                   /* the last reference went: freed */
}
