"""Same GFLOPs, different CPU latency: which widths a pruned model should have for ONNX Runtime on a CPU.

    python benchmarks/prune_latency.py --weights W --data D [--gflops 0.6] [--img 960] \\
        [--variants uniform:8 uniform:16 l1:8 l1:16 gamma:8 gamma:16] [--out DIR] [--iters 100]

Each variant ``strategy:round_to`` prunes W one-shot to --gflops x its GFLOPs at 384x640 (python -m prune's
``ratio_for_gflops``, least-squares reconstruction on 64 training images of D) and is measured with no
training at all: the GFLOPs it landed on, mAP50-95 on D's val split at --img right after the surgery (how
much the choice of channels kept), ONNX Runtime FP32 latency at 384x640, batch 1 (``session.run`` alone, each
model in a process of its own, interleaved: ``prune.pipeline.onnx_latencies``), and the layout conversions ONNX
Runtime inserted (``ReorderInput``/``ReorderOutput`` nodes of its optimised graph: on x86 it runs convolutions in a blocked
channel layout, NCHWc, whose block is 16 channels with AVX-512 and 8 with AVX2; a width outside the block
sends the tensor back and forth). Two more rows swap the criterion at fixed widths — ``gamma:16/pick-l1``
keeps gamma's widths but the largest filters, ``uniform:8/pick-gamma`` the reverse — to separate how many
channels each layer keeps from which. Writes DIR/summary.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from detect.data.config import load_data_config  # noqa: E402
from detect.data.labels import scan_split  # noqa: E402
from detect.model import count_gflops  # noqa: E402
from detect.weights import atomic_save, build_from_checkpoint, load_checkpoint, make_checkpoint  # noqa: E402
from prune.pipeline import calibration_batch, evaluate, onnx_latencies  # noqa: E402
from prune.select import LayerPlan, top_channels  # noqa: E402
from prune.surgery import filter_l1_scores, group_scores, plan, ratio_for_gflops, remove  # noqa: E402

SHAPE = (384, 640)
SWAPS = {"gamma:16/pick-l1": ("gamma", 16, filter_l1_scores), "uniform:8/pick-gamma": ("uniform", 8, group_scores)}


def variant_plans(model, name: str, target: float) -> list[LayerPlan]:
    """The per-layer plan of ``strategy:round_to`` (or of a swap row: those widths, the other criterion)."""
    if name in SWAPS:
        strategy, round_to, rescore = SWAPS[name]
    else:
        strategy, round_to, rescore = name.split(":")[0], int(name.split(":")[1]), None
    ratio = ratio_for_gflops(model, strategy, target, SHAPE, round_to=round_to)
    plans, _ = plan(model, strategy, ratio, None, 0.1, round_to)
    if rescore is None:
        return plans
    scores = {n: s for n, _, s in rescore(model, torch.zeros(1, 3, 64, 64))}
    return [LayerPlan(p.name, p.total, top_channels(scores[p.name], len(p.keep))) for p in plans]


def safe(name: str) -> str:
    return name.replace(":", "_").replace("/", "_")


def layout_reorders(onnx_path: Path) -> int:
    """ReorderInput/ReorderOutput nodes in ONNX Runtime's optimised CPU graph of ``onnx_path``."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(onnx_path.with_suffix(".optimised.onnx"))
    options.log_severity_level = 3  # the "hardware specific" serialisation warning is the point here
    ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    ops = collections.Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)
    return ops["ReorderInput"] + ops["ReorderOutput"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--gflops", type=float, default=0.6)
    p.add_argument("--img", type=int, default=960, help="validation size")
    p.add_argument("--variants", nargs="+", default=["uniform:8", "uniform:16", "l1:8", "l1:16", "gamma:8", "gamma:16"])
    p.add_argument("--iters", type=int, default=100, help="ONNX Runtime runs per model, in 5 interleaved rounds")
    p.add_argument("--runtime", choices=["ort", "ort-1thread"], default="ort",
                   help="ONNX Runtime on all cores (batch-1 latency), or on one thread (per-image cost of a "
                   "process per core; steady where a shared machine's second core is not: slimming round 15)")
    p.add_argument("--out", type=Path, default=Path("runs/bench/prune_latency"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = load_checkpoint(args.weights)
    model = build_from_checkpoint(ckpt, args.weights).float().eval()
    cfg = load_data_config(args.data)
    val, _ = scan_split(cfg, "val", progress=False)
    calib = calibration_batch(cfg, 320, 64)
    base = count_gflops(model, SHAPE)
    rows = {"baseline": {"gflops_ratio": 1.0, "map50_95": evaluate(model, val, cfg.names, args.img, 16, 2)["map50_95"]}}
    ckpts = {"baseline": args.weights}  # file-name-safe label -> checkpoint
    for name in [*args.variants, *SWAPS]:
        plans = variant_plans(model, name, args.gflops)
        pruned = remove(copy.deepcopy(model), plans, calib, compensation="reconstruct")
        ckpts[safe(name)] = args.out / f"{safe(name)}.pt"
        atomic_save(make_checkpoint(pruned, cfg.names), ckpts[safe(name)])
        rows[name] = {"gflops_ratio": count_gflops(pruned, SHAPE) / base,
                      "map50_95": evaluate(pruned, val, cfg.names, args.img, 16, 2)["map50_95"],
                      "widths": sorted(collections.Counter(f"{p.total}->{len(p.keep)}" for p in plans).items())}
        print(name, {k: v for k, v in rows[name].items() if k != "widths"}, flush=True)
    latency = onnx_latencies(ckpts, args.out, SHAPE, args.iters, runtimes=(args.runtime,))[args.runtime]
    for name, row in rows.items():
        row.update(latency_ms=latency[safe(name)], latency_ratio=latency[safe(name)] / latency["baseline"],
                   reorders=layout_reorders(args.out / f"onnx_{safe(name)}" / "model.onnx"))
    (args.out / "summary.json").write_text(json.dumps({"weights": str(args.weights), "gflops": args.gflops,
                                                       "img": args.img, "rows": rows}, indent=2))
    print("| variant | GFLOPs ratio | mAP50-95 right after | ORT ms | latency ratio | layout reorders |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        print(f"| {name} | {r['gflops_ratio']:.3f} | {r['map50_95']:.3f} | {r['latency_ms']:.1f} | "
              f"{r['latency_ratio']:.2f} | {r['reorders']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
