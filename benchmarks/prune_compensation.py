"""What compensating removed channels buys, right after surgery: nothing, the mean fold, or least squares.

    python benchmarks/prune_compensation.py [--task person --work DIR | --weights W --data D]
        [--strategy uniform] [--gflops 0.85 0.73 0.6] [--calib-images 32 64]

For each GFLOPs target (at 384x640; the channel ratio found by bisection) prune the weights one-shot
(min-keep 0.1, round-to 8) three ways — removed channels dropped as they are, their means folded into
the consumers, every layer refit by least squares to the unpruned outputs (``prune.reconstruct``) — and
validate at --img with no training. ``--task person`` is the slimming proof's person task (coco128
person boxes, yolov5n.pt with its person head rows), built under --work. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
sys.path.insert(0, str(REPO / "benchmarks"))
from detect.data.config import load_data_config  # noqa: E402
from detect.data.labels import scan_split  # noqa: E402
from detect.model import count_gflops  # noqa: E402
from detect.paths import shared_dir  # noqa: E402
from detect.weights import build_from_checkpoint, load_checkpoint  # noqa: E402
from prune.pipeline import calibration_batch, evaluate  # noqa: E402
from prune.surgery import plan, ratio_for_gflops, remove  # noqa: E402

SHAPE = (384, 640)


def person_task(work: Path) -> tuple[Path, Path]:
    """(weights, data.yaml) of the slimming proof's person task, built under ``work``."""
    import prune_proof

    work.mkdir(parents=True, exist_ok=True)
    data = prune_proof.person_data(work / "data")
    task = prune_proof.Task("person", work, data, 320, 320, {})
    return prune_proof.starting_weights(task, None), data


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=["person"], help="build the proof's person task under --work")
    p.add_argument("--work", type=Path, default=Path("runs/prune_compensation"))
    p.add_argument("--weights", default=str(shared_dir() / "weights/yolov5n.pt"))
    p.add_argument("--data", default=str(shared_dir() / "datasets/coco128/data.yaml"))
    p.add_argument("--img", type=int, default=320)
    p.add_argument("--strategy", choices=["uniform", "gamma"], default="uniform")
    p.add_argument("--gflops", type=float, nargs="+", default=[0.85, 0.73, 0.6])
    p.add_argument("--calib-images", type=int, nargs="+", default=[32, 64])
    args = p.parse_args()
    weights, data = person_task(args.work) if args.task else (args.weights, args.data)
    cfg = load_data_config(data)
    samples, _ = scan_split(cfg, "val", progress=False)
    model = build_from_checkpoint(load_checkpoint(weights), weights).float().eval()
    calibs = {n: calibration_batch(cfg, args.img, n) for n in args.calib_images}
    base = evaluate(model, samples, cfg.names, args.img, 16, 2)["map50_95"]
    print(f"{weights}: mAP50-95 {base:.4f} unpruned ({data} val, {args.img}); strategy {args.strategy}\n")
    cols = ["dropped"] + [f"{m} ({n} img)" for n in args.calib_images for m in ("mean fold", "least squares")]
    print("| GFLOPs | channel ratio | " + " | ".join(cols) + " | least-squares s |")
    print("| --- " * (len(cols) + 3) + "|")
    gflops0 = count_gflops(model, SHAPE)
    for target in args.gflops:
        ratio = ratio_for_gflops(model, args.strategy, target, SHAPE, round_to=8)
        plans, _ = plan(model, args.strategy, ratio, None, 0.1, 8)
        row, secs = [], 0.0
        runs = [(None, "mean")] + [(calibs[n], m) for n in args.calib_images for m in ("mean", "reconstruct")]
        for calib, comp in runs:
            t0 = time.perf_counter()
            pruned = remove(copy.deepcopy(model), plans, calib, compensation=comp)
            secs += (time.perf_counter() - t0) if comp == "reconstruct" else 0.0
            row.append(evaluate(pruned, samples, cfg.names, args.img, 16, 2)["map50_95"])
        g = count_gflops(pruned, SHAPE) / gflops0
        print(f"| {g:.2f}x | {ratio:.3f} | " + " | ".join(f"{v:.4f}" for v in row)
              + f" | {secs / len(args.calib_images):.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
