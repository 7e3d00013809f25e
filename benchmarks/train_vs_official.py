"""Training throughput against the official YOLOv5 trainer, interleaved on one machine.

    python benchmarks/train_vs_official.py --official-python /tmp/offvenv/bin/python [--rounds 1]

Both fine-tune the shared yolov5n.pt on coco128 train at img 320, batch 16, 2 epochs, 2
workers, CPU. Images/s is measured over each epoch's training loop only (data loading and
optimisation, not validation): ours from results.csv, the official from the elapsed time
on its per-epoch progress bar. Ours runs with close_mosaic=0, as the official v7.0 trainer
keeps mosaic in every epoch, so both do the same augmentation work. Also reports each side's final mAP50-95 on
the val split: as its own trainer printed it, and as our `python -m detect.val` scores each side's best.pt — the
official file loaded as the `yolov5` package saved it (yolov5.models.* classes, docs/migrating.md).
The official side runs the `yolov5==7.0.14` package (see docs/BENCHMARKS.md for its venv).

    python benchmarks/train_vs_official.py --official-python /tmp/offvenv/bin/python \
        --data ../shared/datasets/ccp/data.yaml --epochs 10 --ours runs/ccp-default/weights/best.pt

``--ours`` scores a finished run of ours with the same settings instead of training it again.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
from detect.data.config import load_data_config  # noqa: E402
from detect.data.labels import scan_split  # noqa: E402
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


def detect_val(weights: Path, data: str, img: int, out: Path) -> float:
    """mAP50-95 from ``python -m detect.val``, run on the file as a user would."""
    subprocess.run([sys.executable, "-m", "detect.val", "--weights", str(weights), "--data", data, "--img", str(img),
                    "--device", "cpu", "--json", str(out)], cwd=REPO, check=True, capture_output=True)
    return json.loads(out.read_text())["map50_95"]


def train_ours(args, out: Path) -> tuple:
    config = TrainConfig(data=args.data, weights=args.weights, img=args.img, epochs=args.epochs, batch=args.batch,
                         workers=2, device="cpu", out=out, amp=args.amp, quiet=True,
                         hyp=load_hyp(None, {"close_mosaic": 0}))  # official v7.0 keeps mosaic every epoch
    result = fit(config)
    rows = list(csv.DictReader(open(out / "results.csv")))
    return ("ours", [float(x["images_per_s"]) for x in rows], float(rows[-1]["map50_95"]),
            detect_val(Path(result.best), args.data, args.img, out / "detect_val.json"))


def train_official(args, tmp: Path, n_train: int, r: int) -> tuple:
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
    best = tmp / "t/weights/best.pt"  # as the yolov5 package saved it: loaded here without re-saving
    kept = tmp / f"official{r}_best.pt"
    best.replace(kept)
    print(f"official best.pt kept at {kept}", flush=True)
    return ("official", speeds, float(maps[-1]) if maps else float("nan"),
            detect_val(kept, args.data, args.img, tmp / f"official{r}.json"))


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
    p.add_argument("--ours", type=Path, default=None,
                   help="best.pt of a finished run of ours with these settings: scored, not trained again")
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
    n_train = len(scan_split(load_data_config(args.data), "train", progress=False)[0])
    results = []  # (trainer, images/s per epoch, mAP50-95 its trainer printed, mAP50-95 by our detect.val)
    for r in range(args.rounds):
        if args.ours is not None:
            results.append(("ours (given)", [], float("nan"), detect_val(args.ours, args.data, args.img, tmp / "o.json")))
        else:
            results.append(train_ours(args, tmp / f"ours{r}"))
        results.append(train_official(args, tmp, n_train, r))
    print("| trainer | images/s per epoch | final mAP50-95 (its trainer) | best.pt by our detect.val |")
    print("| --- | --- | --- | --- |")
    for name, speeds, m, ours_val in results:
        print(f"| {name} | {', '.join(f'{s:.1f}' for s in speeds)} | {m:.4f} | {ours_val:.4f} |")
    ours = [s for n, sp, *_ in results if n == "ours" for s in sp]
    off = [s for n, sp, *_ in results if n == "official" for s in sp]
    if ours and off:
        print(
            f"throughput ratio ours / official (mean over epochs): {sum(ours) / len(ours) / (sum(off) / len(off)):.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
