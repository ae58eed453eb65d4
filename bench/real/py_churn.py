# bench/real/py_churn.py — the `real` suite's python3-churn case: object churn.
# Builds and drops many small, short-lived objects (instances, tuples, lists, small dicts), as an
# interpreter running ordinary code does; keeps a sliding window alive so frees come in every order.
# Usage: python3 py_churn.py [SCALE]   (SCALE 1 is ~1 s here; prints a checksum)
import sys


class Node:
    def __init__(self, key, left=None, right=None):
        self.key = key
        self.left = left
        self.right = right


def tree(depth, key):
    if depth == 0:
        return Node(key)
    return Node(key, tree(depth - 1, 2 * key), tree(depth - 1, 2 * key + 1))


def walk(node):
    total = 0
    stack = [node]
    while stack:
        n = stack.pop()
        total += n.key & 0xFF
        if n.left is not None:
            stack.append(n.left)
            stack.append(n.right)
    return total


def main(scale):
    check = 0
    window = [None] * 512
    for i in range(int(500_000 * scale)):
        rec = (i, str(i), [i, i + 1, i + 2], {"k": i, "v": (i, i)})
        window[(i * 7919) % len(window)] = rec  # drops an older record at a scattered slot
        check += len(rec[1]) + rec[3]["k"] % 3
        if i % 2000 == 0:
            check += walk(tree(10, i))  # 2047 nodes made, walked, dropped
    print(check)


main(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
