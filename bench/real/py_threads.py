# bench/real/py_threads.py — the `real` suite's python3-threads case: threads passing objects.
# Four producer threads make records (dicts, lists, strings, bytes) and pass them through queues to
# two consumer threads, which read and drop them: objects freed by a thread other than the one that
# made them. The GIL runs one thread at a time; the allocator sees them all.
# Usage: python3 py_threads.py [SCALE]   (SCALE 1 is ~1 s here; prints a checksum)
import queue
import sys
import threading


def produce(q, n, seed):
    for i in range(n):
        k = seed * 1_000_003 + i
        q.put({"id": k, "name": "item-%d" % k, "tags": [str(k % 7), str(k % 11)], "blob": bytes(k % 200)})
    q.put(None)


def consume(q, producers, out, slot):
    done = 0
    total = 0
    while done < producers:
        rec = q.get()
        if rec is None:
            done += 1
            continue
        total += len(rec["name"]) + len(rec["blob"]) + len(rec["tags"][1])
    out[slot] = total


def main(scale):
    n = int(50_000 * scale)
    queues = [queue.SimpleQueue(), queue.SimpleQueue()]
    out = [0, 0]
    threads = [threading.Thread(target=consume, args=(queues[c], 2, out, c)) for c in range(2)]
    threads += [threading.Thread(target=produce, args=(queues[p % 2], n, p)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(out[0] + out[1])


main(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
