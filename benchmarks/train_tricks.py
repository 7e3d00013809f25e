"""SWA and precise BN on the coco128 fine-tune: do they move mAP? One run each, same seed.

    python benchmarks/train_tricks.py [--epochs 10] [--swa-epochs 4] [--precise-bn 8] [--out runs/tricks]

From the shared yolov5n.pt, img 320, batch 16, nominal batch 16, configs/hyp/finetune.yaml,
validation only at the end (EMA weights). Rows: baseline; precise BN (BN statistics of the
evaluated weights re-estimated over N training batches before validation); SWA (the training
weights of the last K epochs averaged, BN recomputed; its own mAP beside the EMA's). Prints a
markdown table and writes OUT/tricks.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
from detect.hyp import load_hyp  # noqa: E402
from detect.paths import shared_dir  # noqa: E402
from detect.train import TrainConfig, fit  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    shared = shared_dir()
    p.add_argument("--weights", default=str(shared / "weights/yolov5n.pt"))
    p.add_argument("--data", default=str(shared / "datasets/coco128/data.yaml"))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--swa-epochs", type=int, default=4)
    p.add_argument("--precise-bn", type=int, default=8, help="training batches for precise BN")
    p.add_argument("--img", type=int, default=320)
    p.add_argument("--out", type=Path, default=REPO / "runs/tricks")
    args = p.parse_args()
    runs = [("baseline", {}), (f"precise BN ({args.precise_bn} batches)", {"precise_bn_batches": args.precise_bn}),
            (f"SWA (last {args.swa_epochs} epochs)", {"swa_epochs": args.swa_epochs})]
    rows = []
    for name, extra in runs:
        out = args.out / name.split()[0].lower()
        hyp = load_hyp(REPO / "configs/hyp/finetune.yaml", {"nominal_batch": 16, **extra})
        t0 = time.perf_counter()
        result = fit(TrainConfig(data=args.data, weights=args.weights, img=args.img, epochs=args.epochs, batch=16,
                                 out=out, workers=2, device="cpu", val_interval=args.epochs, hyp=hyp, quiet=True))
        last = list(csv.DictReader(open(out / "results.csv")))[-1]
        rows.append({"config": name, "map50": float(last["map50"]), "map50_95": float(last["map50_95"]),
                     "swa_map50_95": float(last["swa/map50_95"]), "best_map50_95": result.summary["map50_95"],
                     "wall_s": time.perf_counter() - t0})
        print(rows[-1], flush=True)
    print("\n| configuration | mAP50 (EMA) | mAP50-95 (EMA) | SWA mAP50-95 | wall s |\n| --- | --- | --- | --- | --- |")
    for r in rows:
        swa = "-" if r["swa_map50_95"] != r["swa_map50_95"] else f"{r['swa_map50_95']:.4f}"
        print(f"| {r['config']} | {r['map50']:.4f} | {r['map50_95']:.4f} | {swa} | {r['wall_s']:.0f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tricks.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
