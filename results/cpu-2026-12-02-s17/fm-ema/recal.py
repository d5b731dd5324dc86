"""The averaged weights' accuracy with batch-norm statistics measured again on 16 clean training
batches (experiments.noise.recalibrate_bn), for each run folder given: is the average's loss in
its batch-norm statistics? Prints a table; writes recal.json beside this script."""
import json
import sys
from pathlib import Path

import torch

from fflearn.experiments.noise import recalibrate_bn
from fflearn.runs import load_run

torch.set_num_threads(2)
rows = []
for d in sys.argv[1:]:
    run = load_run(d)
    s = json.loads((Path(d) / "summary.json").read_text())
    vx, vy = run.split("val")
    tx, ty = run.split("train")
    before = run.evaluate(vx, vy)["accuracy"]
    recalibrate_bn(run.net, run.norm, tx, ty, batches=16)
    row = {"run": d, "raw_val_accuracy": s.get("raw_val_accuracy"), "ema_val_accuracy": before,
           "ema_recalibrated_val_accuracy": run.evaluate(vx, vy)["accuracy"],
           "raw_test_accuracy": s.get("raw_test_accuracy"), "ema_test_accuracy": s["test_accuracy"],
           "ema_recalibrated_test_accuracy": run.evaluate(*run.split("test"))["accuracy"]}
    rows.append(row)
    print(" | ".join(f"{k} {v}" for k, v in row.items()), flush=True)
out = Path(__file__).with_name("recal.json")
out.write_text(json.dumps({"command": "python " + " ".join(sys.argv), "torch": torch.__version__,
                           "rows": rows}, indent=2) + "\n")
