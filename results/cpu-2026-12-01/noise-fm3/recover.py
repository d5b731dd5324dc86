"""Write noise-all.json / noise-recal.json from rows recovered out of two `fflearn experiment noise`
processes (kept as a record of how those two files were made; not part of the library).

The two commands were given the 12 ablation runs and then the Trifecta's 3; the Trifecta predicts
with K passes, so its evaluations at 2,000 test images were ten times dearer and would not have
finished in the session. When each process reached the Trifecta's first run, its list of finished
rows was dumped (gdb, PyRun_SimpleString) and the process stopped. Each run's rows depend on that
run only (its noise draws are seeded by level and draw, not by the run's position), so the rows
are what the same command over the 12 runs computes; the command recorded is that one. The
Trifecta was then evaluated on 500 test images (noise-trifecta*.json).

    python results/cpu-2026-12-01/noise-fm3/recover.py PARTIAL.json OUT.json KINDS [RECAL]
"""

import json
import sys
from pathlib import Path

from fflearn.experiments.noise import LEVELS, summary_table
from fflearn.runfolder import provenance, write_json

partial, out, kinds = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split(",")
recal = int(sys.argv[4]) if len(sys.argv) > 4 else 0
rows = json.loads(partial.read_text())
per_run: dict[str, int] = {}
for r in rows:
    per_run[r["run"]] = per_run.get(r["run"], 0) + 1
complete = {run for run, n in per_run.items() if n == 6 * len(kinds)}  # level 0 + 5 levels per kind
results = [{**r, "layers": None} for r in rows if r["run"] in complete]
headers, table = summary_table(results, [None], kinds, 5)
runs = " ".join(dict.fromkeys(r["run"] for r in results))
cmd = (f"fflearn experiment noise {runs} --kinds {','.join(kinds)} --draws 1 --limit-test 2000 --threads 1"
       + (f" --recalibrate-bn {recal}" if recal else "") + f" --json {out.name}")
prov = {**provenance(), "command": cmd, "hardware": "cpu: x86_64, 2 cores, 1 threads", "date": "2026-12-01 (rows computed 16:47-17:15 UTC)",
        "how": "rows recovered from the running command; see recover.py"}
write_json({"table": [dict(zip(headers, row, strict=True)) for row in table], "results": results,
            "levels": {k: LEVELS[k] for k in kinds}, "draws": 1, "spare_heads": False, "recalibrate_bn": recal,
            "provenance": prov}, out)
print(len(complete), "runs;", len(results), "rows")
