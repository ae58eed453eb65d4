/* model/stw.pml — ouro's stop-the-world handshake (threads/stw.c, threads/thread.c, threads/fork.c).
 *
 * WHAT IT MODELS. N threads (N = 2 or 3: spin -DN=3), each an endless loop over everything an ouro
 * thread may do: attach (thread.c ouro_thread_attach), mutator steps between safepoints, the safepoint
 * (inline fast path and ouro_safepoint_slow), offline sections (ouro_offline_begin/end), detach and
 * exit (thread_leave, thread_exit: an attached thread that exits holding a stop starts it first),
 * ouro_stop_the_world / ouro_start_the_world from an online, an offline or an unattached thread, and
 * fork() (fork_prepare: _ouro_stw_stop_for_fork, or the caller's own stop spanning the fork; the parent
 * side). Shared state: the thread states, the registry, stop_requested, stw_lock, registry_lock,
 * park_lock, park_cond, and liburcu-qsbr's grace-period counter and reader counters. Every label named
 * in docs/threads.md "Model checking" is one step of the code at the line the table there names.
 *
 * ABSTRACTION (what is left out, and why that is sound for the properties below).
 *  - Memory model: Promela interleaves steps sequentially consistently. Every cross-thread edge of the
 *    protocol is seq_cst in the code (the state stores and loads, the flag store and its loads), taken
 *    under park_lock (PARKED, the flag's clear), or fenced by liburcu (rcu_thread_online's and
 *    rcu_quiescent_state's full barriers, synchronize_rcu's barriers): the C11 execution has no
 *    behaviour the interleaving lacks (docs/threads.md "Memory orders").
 *  - liburcu-qsbr: the 64-bit counter becomes gp in {1,2} (toggled by each grace period); a reader's
 *    ctr is 0 offline, else the gp it copied. One grace period source (the stopper, under
 *    registry_lock), so grace periods never overlap and a reader is at most one period behind: the
 *    toggle loses nothing. rcu_thread_online and rcu_quiescent_state copy gp in one step: the only
 *    interleaving this removes is a grace period that starts between the load and the store and skips
 *    the reader (ctr still 0), after which the reader runs with the old gp; it then takes one more slow
 *    safepoint, whose flag load sees what its come-online flag load (later in program order than the
 *    copy) already saw. rcu_register_thread + rcu_thread_offline in attach are one step (under
 *    registry_lock, which every grace period's caller holds). The reclaimer's grace periods
 *    (threads/defer.c) are left out: they only send online threads to slow safepoints sooner.
 *  - stw_all_stopped's walk restarts after it finds an ONLINE thread; the timed wait on stopped_cond
 *    (1 ms timeout, so no wake-up can be lost) is a guard "that thread's state changed"; the yield spin
 *    before it is the same walk. park_cond's wait is a release of park_lock plus a wait for the
 *    broadcast of ouro_start_the_world; spurious wake-ups only re-run the loop's check.
 *  - Mutexes are test-and-set. A thread blocked on one is enabled only while it is free, so weak
 *    fairness does not make it win: "a thread that calls ouro_stop_the_world gets the stop" fails in
 *    the model by barging on stw_lock or park_lock (glibc's mutexes are not FIFO either, and the code
 *    promises no more), and is not checked. The properties below need no mutex fairness: the starved
 *    thread of no_starve's counterexample wins every lock it asks for.
 *  - Left out as thread-local or not part of the handshake: offline nesting (only depth 0 <-> 1
 *    changes anything shared), the watchdog and watch_lock (arming takes a leaf lock and wakes nobody),
 *    the defer throttle and the poll hook (they run after the park, online), exit hooks' contents (an
 *    online mutator step and a safepoint), the fork child's rebuild (single-threaded: the model checks
 *    the state it starts from at the fork instant), error returns refused before any shared access
 *    (attach or detach while holding a stop, a second stop by the holder).
 *
 * PROPERTIES. Safety (assertions and ltl, -DSAFETY): no thread other than the holder is in its online
 * mutator code while the world is stopped (stop_excludes; also asserted at each mutator step and when
 * a stop completes); stoppers exclude each other (one_stopper); a stop is never lost: while a stop is
 * held the flag is set (no_lost_stop); at the fork instant the forking thread holds stw_lock,
 * registry_lock and park_lock and no other thread runs (asserted). Liveness (ltl, weak fairness):
 * every requested stop completes (stop_completes); a thread on its way online — re-attaching, leaving an offline section, or parked —
 * gets to run (no_starve): the property gh-151518 shows CPython's free-threaded build fails, and the
 * code failed too until the start marked the threads on their way online `waking` and the next stopper
 * waited for them (st_wake; finding F1 in docs/threads.md). */

#ifndef N
#define N 2
#endif

#define ONLINE 1
#define OFFLINE 2
#define PARKED 3

/* ---- shared state ---------------------------------------------------------------------------------- */
byte st[N];          /* ouro_thread_t.state (thread writes, stopper reads) */
bit reg[N];          /* in ouro's registry and in liburcu's (both changed together, under registry_lock) */
byte ctr[N];         /* liburcu reader counter: 0 offline, else the gp copied */
byte gp = 1;         /* liburcu's grace-period counter */
bit flag;            /* _ouro_stop_requested */
byte park_lock;      /* 0 free, else holder + 1 */
byte stw_lock;       /* one stop at a time */
byte registry_lock;
bit pw[N];           /* waiting on park_cond */
bit stopper[N];      /* me->stopper */
bit holds[N];        /* _ouro_tls_holds_stop */
bit waking[N];       /* me->waking: released from a park, not yet past come_online's flag check */

/* ---- ghosts (checked, never read by the protocol) ----------------------------------------------------- */
bit running[N];      /* in online mutator code (between come_online's return and go_offline) */
bit stopped;         /* a stop is complete and not yet started again */
bit want_stop[N];    /* inside ouro_stop_the_world (for trails) */
bit want_run[N];     /* on its way online: coming online, or parked */

#define mutex_lock(m)   atomic { m == 0 -> m = me + 1 }
#define mutex_unlock(m) atomic { assert(m == me + 1); m = 0 }
#define lock_stw      mutex_lock(stw_lock)
#define unlock_stw    mutex_unlock(stw_lock)
#define lock_reg      mutex_lock(registry_lock)
#define unlock_reg    mutex_unlock(registry_lock)

/* j is not running mutator code, or holds the stop */
#define QUIET(j) (!running[j] || holds[j])
#if N == 2
#define ALL_QUIET (QUIET(0) && QUIET(1))
#define STOPPERS (holds[0] + holds[1])
#elif N == 3
#define ALL_QUIET (QUIET(0) && QUIET(1) && QUIET(2))
#define STOPPERS (holds[0] + holds[1] + holds[2])
#else
#error "N is 2 or 3"
#endif
#define LAST (N - 1)

/* Roles. With N = 2 both threads do everything. With N = 3 (three threads that all do everything were
 * not exhausted in a minute: over 3e7 states, depth over 1e7), threads 0 and 1 run and stop the world
 * (thread 0 also from offline sections), and thread 2 is a mutator: it attaches, runs, parks, takes
 * offline sections and detaches, over and over (the re-attacher of no_starve). Forks, unattached stops and a stopper's exit
 * are checked with 2 threads. -DCAN_xxx(t)=... overrides a role. */
#if N == 2
#define CAN_STOP(t)  1
#define CAN_FORK(t)  1
#define CAN_USTOP(t) 1
#define CAN_OFF(t)   1
#define CAN_LEAVE(t) 1
#else
#ifndef CAN_STOP
#define CAN_STOP(t)  (t < 2)
#endif
#ifndef CAN_FORK
#define CAN_FORK(t)  0
#endif
#ifndef CAN_USTOP
#define CAN_USTOP(t) 0
#endif
#ifndef CAN_OFF
#define CAN_OFF(t)   (t != 1)
#endif
#ifndef CAN_LEAVE
#define CAN_LEAVE(t) (t == 2)
#endif
#endif

ltl stop_excludes  { [] (stopped -> ALL_QUIET) }
ltl one_stopper    { [] (STOPPERS <= 1) }
ltl no_lost_stop   { [] (stopped -> flag) }
ltl stop_completes { [] (flag -> <> stopped) }
/* no_starve asks nothing of a program that holds a stop for ever: the world must be started again and
 * again ([]<> !flag: stops may follow each other back to back, but each ends). */
ltl no_starve      { ([]<> !flag) -> [] (want_run[LAST] -> <> running[LAST]) }

/* Return points of the shared subroutines (come_online, go_offline, park, stop, start, synchronize). */
#define R_ATTACH   1
#define R_OFFEND   2
#define R_SPPARK   3
#define R_SPON     4
#define R_STOPOFF  5
#define R_STOPON   6
#define R_LEAVEON  7
#define R_LEAVEOFF 8
#define R_OFFBEGIN 9
#define R_COPARK   10
#define R_START    11
#define R_EXITST   12
#define R_FORK     13
#define R_FORKST   14

proctype thread(byte me) {
    bit offl;          /* me->offline_depth > 0 (attached) */
    bit son;           /* stw_stop: the caller was online */
    bit fstop;         /* fork_stopped */
    bit fonline;       /* fork_was_online */
    bit was;           /* synchronize_rcu: was_online */
    byte j;
    byte gstate;       /* go_offline's state argument */
    byte ret, ret2, ret3;   /* return points: come_online, go_offline/park, stop/start */

idle:   /* not attached */
    if
    :: !holds[me] -> goto attach
    :: CAN_USTOP(me) && !holds[me] -> ret3 = R_START; goto stop   /* an unattached stopper */
    :: holds[me] -> ret3 = R_START; goto start           /* start, or exit: stw_stopper_exit */
    :: CAN_FORK(me) && CAN_USTOP(me) -> goto fork
    fi;

attach: /* thread.c ouro_thread_attach */
    lock_reg;
att_reg:
    atomic { reg[me] = 1; ctr[me] = 0; st[me] = OFFLINE; offl = 0 }   /* rcu_register_thread; rcu_thread_offline */
    unlock_reg;
    ret = R_ATTACH; goto come_online;

online: /* attached, ONLINE, running mutator code */
mutate:
    assert(!stopped || holds[me]);
    /* every stretch of online code ends at a safepoint (the time-to-safepoint contract) */
safepoint:
    if
    :: ctr[me] == gp -> skip                           /* ouro_safepoint: fast path */
    :: else ->
sp_qs:  ctr[me] = gp;                                  /* ouro_safepoint_slow: rcu_quiescent_state */
sp_flag:
        if
        :: !stopper[me] && flag ->
            ret2 = R_SPPARK; gstate = PARKED; goto go_offline
        :: else -> skip
        fi
    fi;
choose:
    if
    :: goto online
    :: CAN_OFF(me) -> goto offline_begin                 /* (the holder of a stop may, too) */
    :: CAN_STOP(me) && !stopper[me] -> ret3 = R_STOPON; goto stop
    :: stopper[me] -> ret3 = R_START; goto start
    :: CAN_LEAVE(me) && !stopper[me] -> goto leave     /* ouro_thread_detach, or exit */
    :: CAN_LEAVE(me) && stopper[me] -> ret3 = R_EXITST; goto start   /* thread_exit holding the stop */
    :: CAN_FORK(me) -> goto fork
    fi;

offline_begin:  /* ouro_offline_begin */
    offl = 1; ret2 = R_OFFBEGIN; gstate = OFFLINE; goto go_offline;
offline:        /* attached, inside an offline section */
    if
    :: offl = 0; ret = R_OFFEND; goto come_online       /* ouro_offline_end */
    :: CAN_STOP(me) && !stopper[me] -> ret3 = R_STOPOFF; goto stop
    :: stopper[me] -> ret3 = R_STOPOFF; goto start
    :: CAN_LEAVE(me) && !stopper[me] -> goto leave     /* exit inside an offline section */
    :: CAN_LEAVE(me) && stopper[me] -> ret3 = R_EXITST; goto start
    :: CAN_FORK(me) -> goto fork
    fi;

leave:  /* thread_leave */
    if
    :: offl -> offl = 0; ret = R_LEAVEON; goto come_online
    :: else
    fi;
leave_online:
    assert(!stopped || holds[me]);                     /* the exit hooks run online */
    ret2 = R_LEAVEOFF; gstate = OFFLINE; goto go_offline;
leave_offline:
    lock_reg;
lv_unreg:
    atomic { reg[me] = 0; ctr[me] = 0 }                /* unlink; rcu_unregister_thread */
    unlock_reg;
    goto idle;

/* ---- _ouro_thread_come_online ------------------------------------------------------------------------ */
come_online:
co_state:
    atomic { st[me] = ONLINE; want_run[me] = 1 }
co_urcu:
    ctr[me] = gp;                                      /* rcu_thread_online */
co_flag:
    if
    :: stopper[me] || !flag ->
        d_step { assert(!stopped || holds[me]); running[me] = 1; want_run[me] = 0; waking[me] = 0 }
    :: else -> ret2 = R_COPARK; gstate = PARKED; goto go_offline
    fi;
    if
    :: ret == R_ATTACH || ret == R_OFFEND || ret == R_SPON -> ret = 0; goto online
    :: ret == R_STOPON -> ret = 0; goto st_flag
    :: ret == R_LEAVEON -> ret = 0; goto leave_online
    fi;

/* ---- _ouro_thread_go_offline (then stw_park when PARKED) ---------------------------------------------- */
go_offline:
    skip;
    d_step { running[me] = 0; if :: gstate == PARKED -> want_run[me] = 1 :: else fi }
go_urcu:
    ctr[me] = 0;                                       /* _ouro_thread_quiescent; rcu_thread_offline */
go_state:
    st[me] = gstate;
go_flag:
    if
    :: flag -> mutex_lock(park_lock); mutex_unlock(park_lock)   /* broadcast stopped_cond */
    :: else
    fi;
    if
    :: gstate == PARKED -> goto park
    :: ret2 == R_OFFBEGIN -> atomic { ret2 = 0; gstate = 0 }; goto offline
    :: ret2 == R_LEAVEOFF -> atomic { ret2 = 0; gstate = 0 }; goto leave_offline
    :: ret2 == R_STOPOFF -> atomic { ret2 = 0; gstate = 0 }; goto st_lock
    fi;

park:   /* stw_park */
    mutex_lock(park_lock);
pk_state:
    st[me] = PARKED;                                   /* then broadcast stopped_cond */
pk_wait:
    do
    :: flag -> atomic { assert(park_lock == me + 1); park_lock = 0; pw[me] = 1 };   /* pthread_cond_wait(park_cond) */
              pw[me] == 0;
              mutex_lock(park_lock)
    :: else -> break
    od;
    mutex_unlock(park_lock);
    if
    :: ret2 == R_SPPARK -> atomic { ret2 = 0; gstate = 0; ret = R_SPON }; goto come_online   /* ouro_safepoint_slow */
    :: ret2 == R_COPARK -> atomic { ret2 = 0; gstate = 0 }; goto co_state                    /* come_online's loop */
    fi;

/* ---- stw_stop ---------------------------------------------------------------------------------------- */
stop:
    want_stop[me] = 1;
    son = reg[me] && !offl;
    if
    :: son -> ret2 = R_STOPOFF; gstate = OFFLINE; goto go_offline
    :: else
    fi;
st_lock:
    lock_stw;
    stopper[me] = reg[me];
st_reg:
    lock_reg;
    if
    :: son -> son = 0; ret = R_STOPON; goto come_online      /* no stop can be pending: we hold stw_lock */
    :: else
    fi;
st_flag:
    j = 0;
st_wake:    /* stw_wait_for_waking: the threads the last start released come online first */
    do
    :: j == N -> break
    :: j < N && (j == me || !reg[j] || stopper[j] || !waking[j]) -> j++
    :: j < N && j != me && reg[j] && !stopper[j] && waking[j] -> !waking[j]; j = 0   /* wait, walk again */
    od;
st_setflag:
    flag = 1;
    /* synchronize_rcu (urcu-qsbr.c): offline if online, toggle gp, wait for readers, online again */
sy_off:
    atomic { was = (ctr[me] != 0); ctr[me] = 0 }
sy_gp:
    gp = 3 - gp;
    j = 0;
sy_wait:
    do
    :: j == N -> break
    :: j < N -> (j == me || !reg[j] || ctr[j] == 0 || ctr[j] == gp); j++
    od;
sy_on:
    atomic { if :: was -> ctr[me] = gp :: else fi; was = 0; j = 0 }
st_walk:    /* stw_all_stopped, until true */
    do
    :: j == N -> break
    :: j < N && (j == me || !reg[j] || st[j] != ONLINE) -> j++
    :: j < N && j != me && reg[j] && st[j] == ONLINE -> st[j] != ONLINE; j = 0   /* wait, walk again */
    od;
st_done:
    skip;   /* (a d_step may not be the target of a jump) */
    d_step { holds[me] = 1; assert(ALL_QUIET); stopped = 1; want_stop[me] = 0; j = 0 }
    if
    :: ret3 == R_STOPON -> ret3 = 0; goto choose
    :: ret3 == R_STOPOFF -> ret3 = 0; goto offline
    :: ret3 == R_START -> ret3 = 0; goto idle
    :: ret3 == R_FORK -> ret3 = 0; goto fk_park
    fi;

/* ---- ouro_start_the_world ------------------------------------------------------------------------------ */
start:
    mutex_lock(park_lock);
sw_flag:
    d_step { flag = 0; stopped = 0; j = 0;
             do :: j < N -> pw[j] = 0; if :: j != me && reg[j] && st[j] != OFFLINE -> waking[j] = 1 :: else fi; j++
                :: else -> break od; j = 0 }   /* releases the parked threads: waking (stw_release) */
    mutex_unlock(park_lock);
sw_reg:
    unlock_reg;
sw_stopper:
    stopper[me] = 0;
    holds[me] = 0;
    unlock_stw;
    if
    :: ret3 == R_START && reg[me] && !offl -> ret3 = 0; goto choose
    :: ret3 == R_START && reg[me] && offl -> ret3 = 0; goto offline
    :: ret3 == R_START && !reg[me] -> ret3 = 0; goto idle
    :: ret3 == R_STOPOFF -> ret3 = 0; goto offline
    :: ret3 == R_EXITST -> ret3 = 0; goto leave
    :: ret3 == R_FORKST -> ret3 = 0; goto fk_resume
    fi;

/* ---- fork(): prepare, the fork instant, parent ------------------------------------------------------- */
fork:
    fstop = !holds[me];                                /* _ouro_stw_stop_for_fork */
    if
    :: fstop -> ret3 = R_FORK; goto stop
    :: else
    fi;
fk_park:
    mutex_lock(park_lock);
fk_offline:
    fonline = reg[me] && !offl;
    if :: fonline -> ctr[me] = 0 :: else fi;           /* fork_prepare: rcu_thread_offline */
fk_instant:  /* the process is copied: the child starts from this state */
    atomic {
        assert(stopped && holds[me] && ALL_QUIET);
        assert(stw_lock == me + 1 && registry_lock == me + 1 && park_lock == me + 1)
    }
    atomic { if :: fonline -> ctr[me] = gp :: else fi; fonline = 0 }   /* fork_parent: rcu_thread_online */
    mutex_unlock(park_lock);                           /* _ouro_stw_start_after_fork */
    if
    :: fstop -> ret3 = R_FORKST; goto start
    :: else
    fi;
fk_resume:
    fstop = 0;
    if
    :: reg[me] && !offl -> goto choose
    :: reg[me] && offl -> goto offline
    :: !reg[me] -> goto idle
    fi
}

init {
    byte i;
    atomic {
        i = 0;
        do
        :: i < N -> st[i] = OFFLINE; run thread(i); i++
        :: else -> break
        od
    }
}
