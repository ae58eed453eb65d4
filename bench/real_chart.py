#!/usr/bin/python3
"""bench/real_chart.py — the `real` suite's ratios as a PNG bar chart.

    /usr/bin/python3 bench/real_chart.py RESULTS_JSON OUT_PNG

Reads ouro-bench's results.json (docs/bench.md) and draws, for each metric of the `real` suite
(wall_s, peak_rss_bytes), one group of bars per program (case): the ratio ouro/peer for every peer
that has a median, a line at 1.0 (below it ouro is ahead). `./zigw build bench` runs it after the
driver and writes zig-out/bench/real.png. Needs Debian's matplotlib (python3-matplotlib, which
./zigw installs for the bench step); without `real` records, or without ouro's, it says so and
writes nothing.
"""
import json
import sys

METRICS = [("wall_s", "wall time"), ("peak_rss_bytes", "peak RSS")]
PEERS = ["glibc", "mimalloc", "jemalloc", "tcmalloc"]
COLOURS = ["#6c757d", "#1f77b4", "#2ca02c", "#d62728"]


def ratios(results):
    """{metric: {case: {peer: ouro/peer}}}, cases in the order of the file."""
    med = {}
    cases = []
    for r in results:
        if r["suite"] != "real":
            continue
        if r["case"] not in cases:
            cases.append(r["case"])
        med[(r["case"], r["subject"], r["metric"])] = r["value"]
    out = {}
    for metric, _ in METRICS:
        per_case = {}
        for case in cases:
            ouro = med.get((case, "ouro", metric))
            if not ouro:
                continue
            row = {p: ouro / med[(case, p, metric)] for p in PEERS if med.get((case, p, metric))}
            if row:
                per_case[case] = row
        out[metric] = per_case
    return cases, out


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        results = json.load(f)["results"]
    cases, table = ratios(results)
    if not cases:
        print(f"real_chart: no `real` records in {argv[1]}: no chart")
        return 0
    if not any(table[m] for m, _ in METRICS):
        print(f"real_chart: no ouro medians for the `real` suite in {argv[1]}: no chart")
        return 0
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(METRICS), 1, figsize=(max(8, 1.1 * len(cases) + 2), 7.5), sharex=True)
    width = 0.8 / len(PEERS)
    for ax, (metric, title) in zip(axes, METRICS):
        per_case = table[metric]
        for k, peer in enumerate(PEERS):
            xs = [i + (k - (len(PEERS) - 1) / 2) * width for i, c in enumerate(cases) if peer in per_case.get(c, {})]
            ys = [per_case[c][peer] for c in cases if peer in per_case.get(c, {})]
            ax.bar(xs, ys, width, label=f"ouro / {peer}", color=COLOURS[k])
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_ylabel(f"{title}: ouro / peer")
        ax.set_title(f"{title} ({metric}), lower is better for ouro", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(ncol=len(PEERS), fontsize=8, loc="upper left")
    axes[-1].set_xticks(range(len(cases)))
    axes[-1].set_xticklabels(cases, rotation=30, ha="right")
    fig.suptitle("ouro-bench suite `real`: medians, ratio ouro/peer per program")
    fig.tight_layout()
    fig.savefig(argv[2], dpi=100)
    print(f"real_chart: wrote {argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
