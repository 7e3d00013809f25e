"""Validation parity and speed against the official YOLOv5 val.py, interleaved on one machine.

    python benchmarks/val_vs_official.py --official-python /tmp/offvenv/bin/python [--rounds 2]

The official implementation runs from the `yolov5==7.0.14` PyPI package (a packaging of the
ultralytics/yolov5 v7.0 code) in a separate virtual environment; see docs/BENCHMARKS.md for
its set-up. Both run the shared yolov5n.pt on coco128 val at img 640, batch 16, 2 workers;
rounds alternate so both see the same machine load. Prints mAP, inference ms/img, process
wall time, and the wall-time ratio official / ours.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
from detect.paths import shared_dir  # noqa: E402

OFFICIAL = """
import numpy as np
np.trapz = np.trapezoid  # removed from numpy 2.x; the official metric still calls it
import yolov5.utils.general as g
g.check_font = lambda *a, **k: None  # downloads a font for plot labels; no network here
from yolov5 import val
r = val.run(data={data!r}, weights={weights!r}, imgsz={img}, batch_size={batch}, device="cpu", plots=False,
            project={tmp!r}, name="v", workers=2)
print("RESULT", r[0][2], r[0][3])
"""


def timed(cmd: list[str], env=None) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - t, out.stdout + out.stderr


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--official-python", required=True, help="python of a venv with yolov5==7.0.14 installed")
    shared = shared_dir()
    p.add_argument("--weights", default=str(shared / "weights/yolov5n.pt"))
    p.add_argument("--data", default=str(shared / "datasets/coco128/data.yaml"))
    p.add_argument("--img", type=int, default=640)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    tmp = tempfile.mkdtemp()
    # The official code resolves a relative `path:` against its own package folder: give it an absolute one.
    data_abs = Path(tmp) / "data.yaml"
    text = Path(args.data).read_text()
    data_abs.write_text(re.sub(r"(?m)^path:.*$", f"path: {Path(args.data).parent.resolve()}", text))
    script = Path(tmp) / "official.py"
    script.write_text(
        OFFICIAL.format(data=str(data_abs), weights=args.weights, img=args.img, batch=args.batch, tmp=tmp)
    )
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}  # its torch.load predates weights_only
    rows = []
    for r in range(args.rounds):
        out_json = Path(tmp) / f"ours{r}.json"
        wall, _ = timed(
            [
                sys.executable,
                "-m",
                "detect.val",
                "--weights",
                args.weights,
                "--data",
                args.data,
                "--img",
                str(args.img),
                "--batch",
                str(args.batch),
                "--workers",
                "2",
                "--json",
                str(out_json),
            ]
        )
        m = json.loads(out_json.read_text())
        rows.append(("ours", wall, m["speed_ms"]["inference"], m["map50"], m["map50_95"]))
        wall, log = timed([args.official_python, str(script)], env=env)
        inf = float(re.search(r"([\d.]+)ms inference", log).group(1))
        m50, m5095 = map(float, re.search(r"RESULT ([\d.]+) ([\d.]+)", log).groups())
        rows.append(("official", wall, inf, m50, m5095))
    print(f"{'impl':<9} {'wall s':>7} {'inf ms/img':>10} {'mAP50':>7} {'mAP50-95':>9}")
    for name, wall, inf, m50, m5095 in rows:
        print(f"{name:<9} {wall:>7.1f} {inf:>10.1f} {m50:>7.4f} {m5095:>9.4f}")
    ours = [r[1] for r in rows if r[0] == "ours"]
    official = [r[1] for r in rows if r[0] == "official"]
    print(
        f"wall-time ratio official/ours (median): {sorted(official)[len(official) // 2] / sorted(ours)[len(ours) // 2]:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
