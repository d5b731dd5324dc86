"""What predicts the accuracy that weight noise on layer 0 costs: layer 0's gain, or how far the
perturbation still reaches at the top of the net? Reads JSON written by ``fflearn experiment
noise ... --layers 0 --trace 0.5`` (and the layer-0 noise curves with ``--gain``), and prints per
run the gain, the clean accuracy, the accuracy with layer 0 at sigma 0.5 (mean of the trace's
draws), and the traced change at layer 0 and at the top layer; then, over the runs, the Pearson
and Spearman correlation of the points lost with each.

    python correlate_trace.py FILE.json [FILE.json ...] [--skip A,B] [--json OUT]

A run's rows of one kind (gain, trace, clean accuracy) come from the last file that holds them
for that run, so a later file (the layer-norm nets measured again) replaces an earlier one.
"""

import json
import statistics
import sys
from pathlib import Path

from fflearn.runfolder import write_json

args = sys.argv[1:]
skip = set(args[args.index("--skip") + 1].split(",")) if "--skip" in args else set()
out_path = args[args.index("--json") + 1] if "--json" in args else None
files = [a for i, a in enumerate(args) if not a.startswith("--") and (i == 0 or args[i - 1] not in ("--skip", "--json"))]
gain, trace, clean, label = {}, {}, {}, {}
for f in files:
    d = json.loads(Path(f).read_text())
    for kind, rows in (("gain", d.get("gain", [])), ("trace", d.get("trace", []))):
        fresh: dict = {}
        for r in rows:
            fresh.setdefault(r["run"], []).append(r)
            label[r["run"]] = r["label"]
        (gain if kind == "gain" else trace).update(fresh)
    for r in d.get("results", []):
        if r["level"] == 0 and r["layers"] == [0] and r["kind"] == "weight":
            clean[r["run"]] = r["mean_accuracy"]


def ranks(v: list[float]) -> list[float]:
    """Each value's rank (0 = smallest) for Spearman's correlation."""
    ordered = sorted(v)
    return [float(ordered.index(x)) for x in v]


rows = []
for run, tr in trace.items():
    if label[run] in skip:
        continue
    top = max(r["layer"] for r in tr)
    change = {lv: statistics.fmean(r["change"] for r in tr if r["layer"] == lv) for lv in range(top + 1)}
    noisy = statistics.fmean(r["accuracy"] for r in tr if r["layer"] == 0)
    rows.append({"run": run, "label": label[run], "gain": next(g["pooled"] for g in gain[run] if g["layer"] == 0),
                 "clean": clean[run], "noisy": noisy, "lost": clean[run] - noisy, "change": change,
                 "change_top": change[top], "carried": change[top] / change[0]})
print(f"{'run':26s} {'gain':>5s} {'clean':>6s} {'noisy':>6s} {'lost':>5s} {'ch 0':>5s} {'ch top':>6s} {'top/0':>5s}")
for r in rows:
    name = "/".join(Path(r["run"]).parts[-2:])
    print(f"{name:26s} {r['gain']:5.2f} {100 * r['clean']:6.2f} {100 * r['noisy']:6.2f} {100 * r['lost']:5.1f} "
          f"{r['change'][0]:5.2f} {r['change_top']:6.2f} {r['carried']:5.2f}")
lost = [r["lost"] for r in rows]
corr = {}
for key in ("gain", "change_top", "carried"):
    v = [r[key] if key != "gain" else r["gain"] for r in rows]
    corr[key] = {"pearson": statistics.correlation(v, lost), "spearman": statistics.correlation(ranks(v), ranks(lost)),
                 "runs": len(rows)}
    print(f"points lost vs {key:10s} over {len(rows)} runs: Pearson {corr[key]['pearson']:+.2f}, "
          f"Spearman {corr[key]['spearman']:+.2f}")
per_label = {}
for lab in dict.fromkeys(r["label"] for r in rows):
    mine = [r for r in rows if r["label"] == lab]
    per_label[lab] = {k: [statistics.fmean(r[k] for r in mine), statistics.stdev(r[k] for r in mine)]
                      for k in ("gain", "lost", "change_top", "carried")}
if out_path:
    write_json({"files": files, "skip": sorted(skip), "rows": rows, "correlation": corr, "per_label": per_label},
               out_path)
