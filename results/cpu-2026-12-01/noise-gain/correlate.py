"""Does layer 0's weight-noise gain predict what weight noise on layer 0 costs? Reads the JSON of

    fflearn experiment noise <21 run folders> --kinds weight --layers 0 --draws 5 --limit-test 1000 --json noise-layer0-gain.json --gain

and prints, per run, layer 0's gain and flatness beside its accuracy (mean of 5 draws) at each
level, then the correlation over runs (Pearson and Spearman) of gain and the accuracy lost.

    python results/cpu-2026-12-01/noise-gain/correlate.py noise-layer0-gain.json [--gain GAIN.json] [--json OUT]

``--gain``: take the gain rows from another file of the same runs (``--kinds '' --gain``);
``--skip A,B``: leave out the runs of those settings (e.g. the nets without batch norm, which
``--recalibrate-bn`` leaves unchanged); ``--replace FILE``: the runs that FILE (the same command
on some of the runs) holds take their rows from it (the layer-norm nets, measured again after
the fix that spares layer norm's 3-D gain and bias from weight noise).
"""

import json
import statistics
import sys
from pathlib import Path

from fflearn.runfolder import write_json


def ranks(v: list[float]) -> list[float]:
    order = sorted(range(len(v)), key=lambda i: v[i])
    r = [0.0] * len(v)
    for k, i in enumerate(order):
        r[i] = float(k)
    return r


d = json.loads(Path(sys.argv[1]).read_text())
if "--replace" in sys.argv:
    new = json.loads(Path(sys.argv[sys.argv.index("--replace") + 1]).read_text())["results"]
    again = {r["run"] for r in new}
    d["results"] = [r for r in d["results"] if r["run"] not in again] + new
src = json.loads(Path(sys.argv[sys.argv.index("--gain") + 1]).read_text()) if "--gain" in sys.argv else d
gain = {r["run"]: r for r in src["gain"] if r["layer"] == 0}
skip = set(sys.argv[sys.argv.index("--skip") + 1].split(",")) if "--skip" in sys.argv else set()
runs = [r for r in dict.fromkeys(r["run"] for r in d["results"]) if gain[r]["label"] not in skip]
rows = []
for run in runs:
    mine = {r["level"]: r["mean_accuracy"] for r in d["results"] if r["run"] == run and r["layers"] == [0]}
    g = gain[run]
    rows.append({"run": run, "label": g["label"], "gain": g["pooled"], "flatness": g.get("flatness"),
                 "clean": mine[0], **{f"L{lv}": mine[lv] for lv in sorted(mine) if lv}})
print(f"{'run':28s} {'gain':>5s} {'flat':>5s} {'clean':>6s} " + " ".join(f"{'L' + str(i):>6s}" for i in range(1, 6)))
for r in rows:
    name = "/".join(Path(r["run"]).parts[-2:])
    flat = "-" if r["flatness"] is None else f"{r['flatness']:.3f}"
    print(f"{name:28s} {r['gain']:5.2f} {flat:>5s} {100 * r['clean']:6.2f} "
          + " ".join(f"{100 * r[f'L{i}']:6.2f}" for i in range(1, 6)))
out = {"rows": rows, "correlation": {}}
for lv in range(1, 6):
    g = [r["gain"] for r in rows]
    loss = [r["clean"] - r[f"L{lv}"] for r in rows]
    pear, spear = statistics.correlation(g, loss), statistics.correlation(ranks(g), ranks(loss))
    out["correlation"][f"L{lv}"] = {"pearson": pear, "spearman": spear, "runs": len(rows)}
    print(f"L{lv}: gain vs accuracy lost over {len(rows)} runs: Pearson {pear:+.2f}, Spearman {spear:+.2f}")
if "--json" in sys.argv:
    write_json(out, sys.argv[sys.argv.index("--json") + 1])
