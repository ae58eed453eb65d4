# bench/real/py_dictstr.py — the `real` suite's python3-dict-str case: dicts and strings.
# Generates text from a fixed-seed word list, counts words and bigrams in dicts, formats, joins,
# splits and slices strings: the growing and shrinking buffers of str and dict.
# Usage: python3 py_dictstr.py [SCALE]   (SCALE 1 is ~1 s here; prints a checksum)
import random
import sys


def main(scale):
    rng = random.Random(16)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 12))) for _ in range(5000)]
    check = 0
    for rnd in range(int(10 * scale)):
        text = " ".join(rng.choice(words) for _ in range(40_000))
        counts = {}
        pairs = {}
        prev = ""
        for w in text.split():
            counts[w] = counts.get(w, 0) + 1
            key = prev + "/" + w
            pairs[key] = pairs.get(key, 0) + 1
            prev = w
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:50]
        report = "\n".join(f"{w:>12} {n:6d} {w.upper()[::-1]}" for w, n in top)
        index = {w: [i for i, c in enumerate(w) if c in "aeiou"] for w in counts}
        check += len(report) + len(pairs) + sum(len(v) for v in index.values())
        check += len(text.replace("a", "ab").encode()) % 1000
    print(check)


main(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
