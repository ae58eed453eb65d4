#!/usr/bin/env python3
"""tests/fuzz/make_corpus.py — writes the fuzz target's seed corpus (tests/fuzz/corpus/).

Each seed is a small program in the byte-code of tests/fuzz/fuzz_api.c (ops of 4 bytes:
[thread << 5 | opcode, a, b, c]; thread 0 is the main thread, 1..4 the workers) exercising one
area. Seeds are named by area; rerun after changing the byte-code (the op numbers below must match
fz_op_names in fuzz_api.c):

    python3 tests/fuzz/make_corpus.py [OUTDIR [OPENDIR]]

Seeds that fail on a defect still open go to tests/fuzz/crashes-open/ (OPEN below), the rest to
tests/fuzz/corpus/.

Inputs the fuzzer found (crashes turned regression tests) are not written here: they are saved
as they were found, under names starting with "regress-" (docs/building.md, "Fuzzing").
"""
import os
import sys

(NOP, MAKE, LINK, DROP, TAKE, PUT, MUTATE, CHURN, POKE, CHAIN, COLLECT, STOP, OFFLINE, DETACH, ATTACH,
 DEFER, BARRIER, FREEZE, QUERY, MODE, RAW, MISC, FORK, FINI, JOIN, SYNC, FAULT, GC_CB, GC_CONFIG,
 EXITER) = range(30)

# MAKE kinds (b)
SMALLINT, INT, FLOAT, STR, BYTES, TUPLE, LIST, DICT, SET, WEAKREF, WEAKREF_CB, NODE, BLOB, INTERNED, \
    SINGLETON, COPY = range(16)
# COLLECT a: generation a % 4 - 1
GEN0, GEN1, FULL = 1, 2, 3


def op(code, a=0, b=0, c=0, thread=0):
    return bytes([(thread << 5) | code, a & 255, b & 255, c & 255])


def on(w, code, a=0, b=0, c=0):
    """An op run by worker w (0..3)."""
    return op(code, a, b, c, thread=w + 1)


def prog(*ops):
    return b"".join(ops)


def seeds():
    s = {}
    kinds = [k for k in range(16) if k != SINGLETON]
    s["types-every-kind"] = prog(
        *[op(MAKE, k, k, 7 * k + 1) for k in kinds],
        *[op(POKE, k, h, 3 * h + k) for k in kinds for h in (0, 1, 2, 3)],
        *[op(DROP, k) for k in kinds])
    s["sizeof-singletons"] = prog(op(MAKE, 0, SINGLETON, 0), op(MAKE, 1, SINGLETON, 1), op(MAKE, 2, SINGLETON, 2))
    s["cycles-self"] = prog(
        op(MAKE, 0, LIST), op(LINK, 0, 0, 4), op(MAKE, 1, DICT), op(LINK, 1, 1, 0), op(LINK, 1, 1, 1),
        op(MAKE, 2, SET), op(LINK, 2, 2, 2), op(MAKE, 3, NODE), op(LINK, 3, 3, 0), op(LINK, 3, 3, 7),
        op(MAKE, 4, TUPLE, 1), op(LINK, 0, 4, 0), op(LINK, 4, 0, 0),
        op(DROP, 0), op(DROP, 1), op(DROP, 2), op(DROP, 3), op(DROP, 4), op(COLLECT, GEN0), op(COLLECT, FULL))
    s["cycles-finalizers-resurrect"] = prog(
        op(MAKE, 0, NODE, 1), op(MAKE, 1, NODE, 9), op(MAKE, 2, NODE, 0), op(LINK, 0, 1, 0), op(LINK, 1, 2, 0),
        op(LINK, 2, 0, 0), op(MAKE, 3, LIST), op(LINK, 3, 0, 0), op(LINK, 0, 3, 1),
        op(DROP, 0), op(DROP, 1), op(DROP, 2), op(DROP, 3), op(COLLECT, GEN0), op(COLLECT, FULL), op(COLLECT, FULL))
    s["weakrefs-callbacks"] = prog(
        op(MAKE, 0, NODE), op(MAKE, 1, WEAKREF_CB, 0), op(MAKE, 2, WEAKREF, 0), op(MAKE, 3, WEAKREF_CB, 0),
        op(POKE, 1, 0), op(POKE, 2, 0), op(MAKE, 4, INT, 5), op(MAKE, 5, WEAKREF_CB, 4), op(DROP, 3),
        op(DROP, 0), op(POKE, 1, 0), op(POKE, 2, 0), op(DROP, 4), op(POKE, 5, 1), op(COLLECT, FULL))
    s["weakrefs-in-cycles"] = prog(
        op(MAKE, 0, NODE), op(MAKE, 1, NODE), op(LINK, 0, 1, 0), op(LINK, 1, 0, 1),
        op(MAKE, 2, WEAKREF_CB, 0), op(LINK, 1, 2, 2), op(MAKE, 3, WEAKREF_CB, 1), op(MAKE, 4, DICT),
        op(LINK, 4, 3, 0), op(LINK, 0, 4, 2), op(DROP, 0), op(DROP, 1), op(DROP, 4), op(COLLECT, GEN0),
        op(POKE, 3, 0), op(COLLECT, FULL))
    s["chain-nodes-5000"] = prog(op(CHAIN, 0, 0, 255), op(CHAIN, 1, 4, 100), op(DROP, 0), op(DROP, 1),
                                 op(COLLECT, FULL))
    s["chain-lists-dicts-closed"] = prog(op(CHAIN, 0, 5, 120), op(CHAIN, 1, 7, 60), op(CHAIN, 2, 2, 255),
                                         op(POKE, 2, 0, 0), op(DROP, 0), op(DROP, 1), op(DROP, 2),
                                         op(COLLECT, GEN0), op(COLLECT, FULL))
    s["chain-query-in-dealloc"] = prog(op(CHAIN, 0, 8, 10), op(DROP, 0), op(COLLECT, FULL))
    s["freeze-unfreeze"] = prog(
        op(MAKE, 0, LIST), op(LINK, 0, 0, 4), op(MAKE, 1, NODE), op(LINK, 1, 1, 0), op(FREEZE, 0),
        op(DROP, 0), op(DROP, 1), op(COLLECT, FULL), op(QUERY, 0, 3), op(FREEZE, 1), op(COLLECT, FULL),
        op(CHAIN, 2, 4, 20), op(FREEZE, 0), op(DROP, 2))
    s["gc-callbacks"] = prog(
        op(GC_CB, 0, 0), op(GC_CB, 0, 1), op(GC_CB, 0, 1), op(MAKE, 0, LIST), op(LINK, 0, 0, 4), op(DROP, 0),
        op(COLLECT, GEN0), op(GC_CB, 1, 1), op(COLLECT, FULL), op(GC_CB, 1, 3), op(GC_CB, 1, 0),
        op(COLLECT, GEN1))
    s["gc-config-saveall-threshold"] = prog(
        op(GC_CONFIG, 2, 5), op(CHAIN, 0, 4, 30), op(DROP, 0), op(GC_CONFIG, 4), op(MAKE, 1, NODE),
        op(LINK, 1, 1, 0), op(DROP, 1), op(COLLECT, FULL), op(GC_CONFIG, 5), op(GC_CONFIG, 6), op(GC_CONFIG, 7),
        op(GC_CONFIG, 0), op(CHAIN, 2, 5, 10), op(DROP, 2), op(GC_CONFIG, 1), op(GC_CONFIG, 3))
    s["strings-intern"] = prog(
        *[op(MAKE, k, INTERNED, k * 17) for k in range(8)], op(MAKE, 8, STR, 0x85), op(MAKE, 9, STR, 0xc1),
        op(MAKE, 10, STR, 3), op(MAKE, 11, DICT), op(LINK, 11, 8, 1), op(LINK, 11, 10, 1),
        *[op(POKE, k, h, k) for k in (0, 5, 8, 10) for h in range(4)],
        op(MAKE, 12, BYTES, 33), op(POKE, 12, 0, 5), op(POKE, 12, 1, 2))
    s["stop-attached"] = prog(
        op(MAKE, 0, DICT), op(PUT, 0, 0), on(0, TAKE, 0, 0), on(0, CHURN, 0, 63, 1), op(STOP, 0, 50),
        on(1, STOP, 0, 20), op(STOP, 4, 100), on(0, CHURN, 0, 63, 2), op(SYNC, 0), op(SYNC, 1))
    s["stop-unattached"] = prog(
        op(MAKE, 0, LIST), op(PUT, 0, 0), on(0, CHURN, 0, 40, 3), op(STOP, 1, 30), on(1, CHURN, 0, 40, 4),
        op(STOP, 1, 80), op(DETACH), op(STOP, 0, 10), op(ATTACH))
    s["stop-unattached-api"] = prog(op(MAKE, 0, SET), op(PUT, 1, 0), on(0, CHURN, 1, 20, 5), op(STOP, 2, 10))
    s["stop-unattached-exit"] = prog(op(STOP, 3, 10), op(MAKE, 0, LIST), op(STOP, 0, 5), op(COLLECT, FULL))
    s["attach-detach-offline"] = prog(
        op(MAKE, 0, NODE), op(DETACH), op(RAW, 0, 0, 40), op(OFFLINE, 0, 10), op(STOP, 0, 5), op(BARRIER, 0),
        op(MAKE, 1, LIST), op(OFFLINE, 1, 20), on(0, DETACH), on(0, RAW, 1, 0, 200), on(0, MAKE, 0, NODE),
        on(0, OFFLINE, 1, 30), on(1, ATTACH, 1), op(JOIN, 0, 1), op(JOIN, 1, 0))
    share = [op(MAKE, 0, DICT), op(MAKE, 1, LIST), op(MAKE, 2, SET), op(MAKE, 3, NODE)]
    share += [op(PUT, j, j) for j in range(4)]
    s["threads-4-share-dict-list"] = prog(
        *share, *[on(w, CHURN, w, 63, 10 + w) for w in range(4)], op(CHURN, 0, 63, 9),
        *[on(w, CHURN, (w + 1) % 4, 63, 20 + w) for w in range(4)], op(CHURN, 1, 63, 7), op(COLLECT, FULL),
        *[on(w, MUTATE, w, 1, 5) for w in range(4)], *[op(SYNC, w) for w in range(4)], op(COLLECT, FULL))
    s["threads-exit-while-collecting"] = prog(
        *share, *[on(w, TAKE, 0, w) for w in range(4)], *[on(w, CHAIN, 1, 4, 10) for w in range(4)],
        *[on(w, LINK, 0, 1, w) for w in range(4)], op(JOIN, 0, 4), op(JOIN, 1, 5), op(EXITER, 0, 1),
        op(EXITER, 5, 1), op(EXITER, 6, 1), op(EXITER, 12 | 16, 0), op(COLLECT, FULL), op(JOIN, 2, 6))
    s["threads-mutate-cycles-across"] = prog(
        *share, on(0, TAKE, 0, 0), on(1, TAKE, 0, 1), on(0, LINK, 0, 0, 0), on(1, LINK, 0, 0, 4),
        on(0, PUT, 5, 0), on(1, TAKE, 1, 5), on(1, LINK, 1, 0, 0), on(0, DROP, 0), on(1, DROP, 0),
        on(1, DROP, 1), op(DROP, 0), op(DROP, 1), op(PUT, 0, 15), op(PUT, 1, 15), op(PUT, 5, 15),
        on(2, COLLECT, GEN0), on(3, COLLECT, FULL), op(SYNC, 2), op(COLLECT, FULL))
    s["defer-barrier"] = prog(
        op(DEFER, 5, 0, 1), on(0, DEFER, 15, 0, 0), on(1, DEFER, 3, 1, 1), op(BARRIER, 1), op(BARRIER, 0),
        on(0, BARRIER, 0), op(SYNC, 0), op(DEFER, 7, 1, 0))
    s["fork-simple"] = prog(
        op(MAKE, 0, NODE), op(LINK, 0, 0, 0), op(DEFER, 2, 0, 0),
        op(FORK, 7), op(0, 3, 1), op(1, 2, LIST, 0), op(2, FULL), op(3, 4, 1), op(4, 5), op(5, 0, 10),
        op(6, 2, 2, 4), op(7, 0, 0, 4),
        op(DROP, 0), op(COLLECT, FULL))
    s["fork-while-threads-work"] = prog(
        *share, *[on(w, CHURN, w, 63, 30 + w) for w in range(3)], *[on(w, COLLECT, FULL) for w in range(3)],
        op(FORK, 3), op(0, 2, 0), op(2, FULL), op(3, 2, 0), op(4, 2),
        *[on(w, CHURN, w, 63, 40 + w) for w in range(3)],
        op(FORK, 1), op(2, FULL), op(3, 1, 1))
    s["fork-after-idle-worker"] = prog(
        on(0, MAKE, 0, NODE), on(0, CHAIN, 1, 1, 5), on(0, DROP, 0), on(0, DROP, 1), op(SYNC, 0),
        op(FORK, 1), op(3, 4, 0, 0), on(1, BARRIER, 0), op(FORK, 1), op(3, 1, 1, 0))
    s["fini-init"] = prog(
        op(MAKE, 0, LIST), op(DEFER, 3, 0, 0), op(FINI, 0), op(MAKE, 1, NODE), op(FINI, 1),
        op(DEFER, 2, 0, 1), op(FINI, 2), on(0, MAKE, 0, NODE), op(FINI, 2), op(JOIN, 0, 0), op(FINI, 2),
        op(BARRIER, 0))
    s["fini-deferred-object"] = prog(op(DEFER, 1, 1, 0), op(FINI, 2), op(DEFER, 1, 0, 0), op(BARRIER, 0))
    s["fault-os-map"] = prog(
        op(FAULT, 0, 1), op(CHAIN, 0, 0, 150), op(RAW, 0, 8, 255), op(FAULT, 0, 3), op(CHAIN, 1, 1, 200),
        op(MAKE, 2, DICT), op(POKE, 2, 0, 1), op(COLLECT, FULL))
    s["fault-malloc"] = prog(
        op(FAULT, 1, 0), on(0, MAKE, 0, LIST), op(MAKE, 0, NODE), op(FAULT, 1, 2), op(DEFER, 3, 0, 1),
        op(FAULT, 1, 1), op(COLLECT, FULL), op(FAULT, 1, 4), *share, on(1, CHURN, 0, 30, 1),
        op(FAULT, 1, 0), op(CHAIN, 5, 4, 20), op(DROP, 5), op(COLLECT, FULL))
    s["gc-queries"] = prog(
        op(MAKE, 0, NODE), op(MAKE, 1, LIST), op(LINK, 1, 0, 0), op(MAKE, 2, DICT), op(LINK, 2, 0, 0),
        op(QUERY, 0, 0), op(QUERY, 0, 1), op(QUERY, 1, 1), op(QUERY, 0, 2, 0), op(QUERY, 0, 2, 1),
        op(QUERY, 0, 3), op(POKE, 0, 5), op(POKE, 0, 4), op(POKE, 0, 3))
    s["raw-alloc"] = prog(
        *[op(RAW, i, 0, 17 * i + 3) for i in range(8)], op(RAW, 1, 1, 200), op(RAW, 2, 9, 100),
        op(RAW, 3, 2), on(0, RAW, 0, 8, 255), on(0, RAW, 0, 1, 2), op(MISC, 3), op(MISC, 2), op(MISC, 4))
    s["misc-merge-stats"] = prog(
        op(MAKE, 0, LIST), op(PUT, 0, 0), on(0, TAKE, 0, 0), on(0, CHURN, 0, 20, 1), op(DROP, 0),
        op(MISC, 1), op(MISC, 0), op(MISC, 5), on(0, MISC, 1), on(0, MISC, 3), op(SYNC, 0), op(MISC, 3))
    s["tuples-steal-copies"] = prog(
        op(MAKE, 0, TUPLE, 2), op(MAKE, 1, LIST), op(LINK, 0, 1, 1), op(LINK, 1, 0, 0), op(MAKE, 2, COPY, 1),
        op(MAKE, 3, COPY, 0), op(MAKE, 4, DICT), op(MAKE, 5, COPY, 4), op(POKE, 0, 0, 1), op(POKE, 0, 0, 2))
    return s


# Seeds that fail today on a defect still open (issue 14): written to crashes-open/ instead of corpus/,
# so that the replay in `./zigw build test` passes. Move a name out of here when its defect is fixed.
OPEN = {}  # none open: the defects of issue 14 these seeds found are fixed (tests/test_lifecycle.c)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus")
    out_open = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "crashes-open")
    for d in (out, out_open):
        os.makedirs(d, exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(out_open if name in OPEN else out, "seed-" + name), "wb") as f:
            f.write(data)
    print(f"make_corpus: {len(seeds()) - len(OPEN)} seeds in {out}, {len(OPEN)} in {out_open}")


if __name__ == "__main__":
    main()
