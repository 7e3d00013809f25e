"""Training throughput against the official YOLOv5 trainer, interleaved on one machine.

    python benchmarks/train_vs_official.py --official-python /tmp/offvenv/bin/python [--rounds 1]

Both fine-tune the shared yolov5n.pt on coco128 train at img 320, batch 16, 2 epochs, 2
workers, CPU. Images/s is measured over each epoch's training loop only (data loading and
optimisation, not validation): ours from results.csv, the official from the elapsed time
on its per-epoch progress bar. Ours runs with close_mosaic=0, as the official v7.0 trainer
keeps mosaic in every epoch, so both do the same augmentation work. Also reports each side's final mAP50-95 on coco128 val.
The official side runs the `yolov5==7.0.14` package (see docs/BENCHMARKS.md for its venv).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
from detect.hyp import load_hyp  # noqa: E402
from detect.paths import shared_dir  # noqa: E402
from detect.train import TrainConfig, fit  # noqa: E402

OFFICIAL = """
import numpy as np
np.trapz = np.trapezoid  # removed from numpy 2.x
import yolov5.utils.general as g
g.check_font = lambda *a, **k: None  # downloads a font for plots; no network here
from yolov5 import train
train.run(data={data!r}, weights={weights!r}, imgsz={img}, epochs={epochs}, batch_size={batch}, device="cpu",
          workers=2, project={tmp!r}, name="t", exist_ok=True, noplots=True)
"""


def _minsec(s: str) -> float:
    parts = [float(x) for x in s.split(":")]
    return sum(v * 60**i for i, v in enumerate(reversed(parts)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--official-python", required=True)
    shared = shared_dir()
    p.add_argument("--weights", default=str(shared / "weights/yolov5n.pt"))
    p.add_argument("--data", default=str(shared / "datasets/coco128/data.yaml"))
    p.add_argument("--img", type=int, default=320)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--amp", default="off", choices=["off", "bf16"], help="ours: bf16 autocast on CPU (AVX512-BF16/AMX)")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    data_abs = tmp / "data.yaml"
    data_abs.write_text(
        re.sub(r"(?m)^path:.*$", f"path: {Path(args.data).parent.resolve()}", Path(args.data).read_text())
    )
    (tmp / "official.py").write_text(
        OFFICIAL.format(
            data=str(data_abs), weights=args.weights, img=args.img, epochs=args.epochs, batch=args.batch, tmp=str(tmp)
        )
    )
    n_train = len(list((Path(args.data).parent / "images/train2017").iterdir()))
    results = []
    for r in range(args.rounds):
        out = tmp / f"ours{r}"
        config = TrainConfig(data=args.data, weights=args.weights, img=args.img, epochs=args.epochs, batch=args.batch,
                             workers=2, device="cpu", out=out, amp=args.amp, quiet=True,
                             hyp=load_hyp(None, {"close_mosaic": 0}))  # official v7.0 keeps mosaic every epoch
        fit(config)
        rows = list(csv.DictReader(open(out / "results.csv")))
        results.append(("ours", [float(x["images_per_s"]) for x in rows], float(rows[-1]["map50_95"])))
        log = subprocess.run(
            [args.official_python, str(tmp / "official.py")],
            capture_output=True,
            text=True,
            env={**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"},
            check=True,
        )
        text = (log.stdout + log.stderr).replace("\r", "\n")
        epochs = {}
        for line in text.splitlines():  # training bars: "  1/1  0G  ...  320: 100%|...| 8/8 [00:16<00:00, ...]"
            m = re.search(r"^\s+(\d+)/\d+\s+\S+G.*\s(\d+)/\2 \[([\d:]+)<", line)
            if m:
                epochs[int(m.group(1))] = _minsec(m.group(3))
        speeds = [n_train / t for _, t in sorted(epochs.items())]
        maps = re.findall(r"^\s+all\s+\d+\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+([\d.]+)", text, re.M)
        results.append(("official", speeds, float(maps[-1]) if maps else float("nan")))
    print("| trainer | images/s per epoch | final mAP50-95 |\n| --- | --- | --- |")
    for name, speeds, m in results:
        print(f"| {name} | {', '.join(f'{s:.1f}' for s in speeds)} | {m:.4f} |")
    ours = [s for n, sp, _ in results if n == "ours" for s in sp]
    off = [s for n, sp, _ in results if n == "official" for s in sp]
    if ours and off:
        print(
            f"throughput ratio ours / official (mean over epochs): {sum(ours) / len(ours) / (sum(off) / len(off)):.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
