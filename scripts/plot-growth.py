#!/usr/bin/env python3
"""Plots the growth benchmark (issue 16): seconds per GB and peak RSS of `mc-agent snapshot`
and `mc-restore --at latest` against the dataset's size, from the CSV that
`mc-bench-peers --csv FILE` appends one line to per run.

    python3 -m venv /tmp/plotenv && /tmp/plotenv/bin/pip install matplotlib
    /tmp/plotenv/bin/python scripts/plot-growth.py docs/growth.csv docs/growth.png

Lines with the same size are averaged (medians are already taken over rounds by the bench).
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, out: str) -> None:
    rows = list(csv.DictReader(open(src)))
    if not rows:
        sys.exit(f"{src}: no rows")
    rows.sort(key=lambda r: float(r["bson_gb"]))
    gb = [float(r["bson_gb"]) for r in rows]

    def col(name: str) -> list:
        return [float(r[name]) if r[name] not in ("", "NaN", "nan") else float("nan") for r in rows]

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(gb, col("snapshot_s_per_gb"), "o-", label="mc-agent snapshot")
    left.plot(gb, col("restore_s_per_gb"), "s-", label="mc-restore --at latest (load + indexes)")
    for series, style in ((col("snapshot_s_per_gb"), "C0"), (col("restore_s_per_gb"), "C1")):
        mid = sorted(series)[len(series) // 2]
        left.axhspan(mid * 0.85, mid * 1.15, color=style, alpha=0.08)
    left.set_xscale("log")
    left.set_xticks(gb, [f"{g:.2g}" for g in gb])
    left.set_xlabel("dataset, GB of BSON")
    left.set_ylabel("seconds per GB (lower is faster)")
    left.set_ylim(bottom=0)
    left.set_title("Time per GB (bands: median ±15 %)")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)

    right.plot(gb, col("snapshot_rss_mib"), "o-", label="mc-agent snapshot")
    right.plot(gb, col("restore_rss_mib"), "s-", label="mc-restore --at latest")
    oplog = col("oplog_restore_rss_mib")
    if any(v == v for v in oplog):
        right.plot(gb, oplog, "^--", label="mc-restore with ≥ 2 GB of oplog replayed")
    right.axhline(256, color="C0", ls=":", lw=1)
    right.axhline(512, color="C1", ls=":", lw=1)
    right.text(gb[0], 256, " snapshot goal 256 MiB", va="bottom", fontsize=8, color="C0")
    right.text(gb[0], 512, " restore goal 512 MiB", va="bottom", fontsize=8, color="C1")
    right.set_xscale("log")
    right.set_xticks(gb, [f"{g:.2g}" for g in gb])
    right.set_xlabel("dataset, GB of BSON")
    right.set_ylabel("peak RSS, MiB")
    right.set_ylim(0, 600)
    right.set_title("Peak RSS of the process")
    right.grid(alpha=0.3)
    right.legend(fontsize=8, loc="lower right")

    fig.suptitle("mc-bench-peers growth (issue 16), 2 CPUs, one private mongod 6.0.5 each side")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: plot-growth.py GROWTH.csv OUT.png")
    main(sys.argv[1], sys.argv[2])
