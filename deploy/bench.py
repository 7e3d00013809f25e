"""One latency table across backends: PyTorch, ONNX Runtime, OpenVINO, TensorRT; mAP beside it.

    python -m deploy.bench --weights W [W2 ...] [--onnx F ...] [--engine F ...] --img 384 640 \\
        [--compare-img 640 640] --batch 1 --iters 200 [--calib-data D] [--data D] [--json OUT] [--plot OUT.png]

For each model and shape, every backend present here runs ``--warmup`` untimed iterations,
then ``--iters`` timed ones: *model* is inference on a ready tensor; *end-to-end* adds JPEG
decoding, letterboxing and NMS. Reports p50/p90/p99 latency (ms) and throughput (images/s).
ONNX files are exported from each --weights on the fly unless given (INT8 too with
--calib-data); given files and engines are timed at the shape they were exported for. ONNX
Runtime uses CUDA only where its build has the CUDA provider. With --data each row also gets
its mAP on the val split at the benched shape. Several --weights (e.g. pruned and unpruned)
and --compare-img give side-by-side rows.

The CPU rows of ONNX Runtime and OpenVINO are timed as a deployment runs them, both columns:
each in a fresh process of its own, the rows interleaved over --rounds (deploy.session_timer),
with each row's ratio to ONNX Runtime FP32 from the same run (in one process, live sessions'
ratios moved with the order they were created; end to end, ONNX Runtime FP32 read 73 ms against
INT8's 28 ms where the model alone took 17.2 and 14.1).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch

from deploy import export
from deploy.quantize import export_int8
from deploy.session_timer import end_to_end_call, median_ms, time_isolated_pipeline
from detect import cli
from detect.backend import TorchBackend
from detect.boxes import prepare_image
from detect.data.config import load_data_config
from detect.data.dataset import to_tensor
from detect.data.labels import scan_split
from detect.data.synthetic import make_image
from detect.errors import UsageError
from detect.evaluate import fixed_shape_map
from detect.infer.metadata import read_metadata
from detect.infer.runtimes import OnnxBackend, OpenVinoBackend, openvino_half_precision
from detect.infer.tensorrt import TrtBackend
from detect.machine import machine_info
from detect.model import build_model, default_arch, parse_model_name
from detect.outputs import ensure_writable
from detect.weights import atomic_save, make_checkpoint


def _stats(times: list[float], batch: int) -> dict:
    t = np.array(times) * 1e3
    return {
        "p50_ms": float(np.percentile(t, 50)),
        "p90_ms": float(np.percentile(t, 90)),
        "p99_ms": float(np.percentile(t, 99)),
        "images_per_s": float(batch * 1e3 / t.mean()),
    }


def _time(fn, warmup: int, iters: int, cuda: bool) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return out


def _test_image(tmp: Path) -> Path:
    """A 1080x1920 JPEG (the contest's typical test image) to decode in the end-to-end timing."""

    img, _, _ = make_image(1, seed=0)
    if img.shape[:2] != (1080, 1920):
        img = cv2.resize(img, (1920, 1080))
    path = tmp / "bench_1080x1920.jpg"
    cv2.imwrite(str(path), img)
    return path


def bench_backend(name: str, backend, shape, batch: int, image: Path, warmup: int, iters: int, cuda: bool) -> dict:
    """*model* and *end-to-end* latency in this process (PyTorch, CUDA and TensorRT rows)."""
    net, _ = prepare_image(cv2.imread(str(image)), max(shape), 32, shape=shape)
    x = to_tensor(net)[None].float().div(255).repeat(batch, 1, 1, 1)
    if cuda:  # *model* time starts from a tensor already on the GPU (no pageable host copy inside)
        x = x.cuda()

    def model_only():
        with torch.inference_mode():
            backend(x)

    return {
        "backend": name,
        "model": _stats(_time(model_only, warmup, iters, cuda), batch),
        "end_to_end": _stats(_time(end_to_end_call(backend, image, shape, batch), warmup, iters, cuda), batch),
    }


def time_alone(group: list[tuple[dict, tuple[Path, str]]], image: Path, shape: tuple[int, ...], rounds: int,
               iters: int, warmup: int) -> None:
    """Fill the *model* and *end-to-end* latency of ``group``'s rows (row, (file, deploy.session_timer
    runtime)): every row in a fresh process, interleaved round by round, ``iters`` calls in all; ``x_ort_fp32``:
    the ratio of its rounds' median to ONNX Runtime FP32's (same weights, shape and run)."""
    if not group:
        return
    files = {row["backend"]: path for row, (path, _) in group}
    runtimes = {row["backend"]: runtime for row, (_, runtime) in group}
    timed = time_isolated_pipeline(files, image, shape, rounds, max(1, math.ceil(iters / rounds)), warmup, runtimes)
    base = next((timed[row["backend"]] for row, _ in group
                 if row["runtime"] == "onnxruntime" and row["precision"] == "fp32"), None)
    for row, _ in group:
        for part, per_round in timed[row["backend"]].items():
            row[part] = {**_stats([t for r in per_round for t in r], shape[0]), "process": "own, interleaved",
                         "x_ort_fp32": median_ms(per_round) / median_ms(base[part]) if base else None}


def weights_or_scale(name: str, tmp: Path) -> Path:
    """A .pt as given, or for a scale name a random-initialised checkpoint of that architecture."""
    if Path(name).suffix or Path(name).exists():
        return Path(name)

    try:
        scale = parse_model_name(name)
    except ValueError as e:
        raise UsageError(str(e)) from None
    path = tmp / f"{scale}-random-init.pt"
    atomic_save(make_checkpoint(build_model(default_arch(scale, 80)), [str(i) for i in range(80)]), path)
    return path


def _ort_device() -> tuple[torch.device, str]:
    """ONNX Runtime's device: CUDA only where this onnxruntime build has the CUDA provider (the pinned
    one is the CPU build, so a GPU host without onnxruntime-gpu still benches ONNX Runtime on the CPU)."""
    import onnxruntime as ort  # lazy: ONNX rows only

    if torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers():
        return torch.device("cuda"), "CUDA"
    return torch.device("cpu"), "CPU"


def _has_openvino() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def _exported(weights: Path, shape, batch: int, tmp: Path, calib_data: str | None) -> list[Path]:
    """model.onnx, model_fp16.onnx and, with calibration data, model_int8.onnx of ``weights`` at ``shape``
    (INT8 with ``deploy.export --int8``'s defaults: the row's mAP is the exported model's; with 64 images
    instead, OpenVINO INT8 lost 0.010 on coco128 where the default loses none, docs/BENCHMARKS.md)."""

    out = tmp / f"{weights.stem}_{shape[0]}x{shape[1]}"
    done = export.export(weights, out, tuple(shape), batch)
    files = [done.fp32, done.fp16]
    if calib_data:
        export_int8(done.fp32, calib_data, done.meta, evaluate_map=False)
        files.append(out / "model_int8.onnx")
    return files


@dataclass
class Candidate:
    """One row of the table before it is timed: ``make()`` builds its backend. ``isolated``: (file,
    deploy.session_timer runtime) for the CPU rows of ONNX Runtime and OpenVINO, timed in processes of their
    own (this process builds those only to score them, after every timing child ran); None: timed here."""

    label: str
    runtime: str  # pytorch, onnxruntime, openvino, tensorrt
    precision: str  # fp32, fp16, int8, or OpenVINO's inference type (bf16, f16) on an FP32 graph
    make: Callable
    cuda: bool = False
    isolated: tuple[Path, str] | None = None


def _backends(weights: Path, shape, batch: int, onnx_files: list[Path], engines: list[Path], tmp: Path,
              calib_data: str | None = None):
    """A Candidate for every backend available here, the graphs' precision read from their metadata."""
    cpu = torch.device("cpu")
    yield Candidate("PyTorch FP32 CPU", "pytorch", "fp32", partial(TorchBackend, weights, cpu))
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        yield Candidate("PyTorch FP32 CUDA", "pytorch", "fp32", partial(TorchBackend, weights, cuda), cuda=True)
        yield Candidate("PyTorch FP16 CUDA", "pytorch", "fp16", partial(TorchBackend, weights, cuda, half=True), cuda=True)
    onnx_files = onnx_files or _exported(weights, shape, batch, tmp, calib_data)
    device, where = _ort_device()
    for f in onnx_files:
        precision = read_metadata(f).get("precision", "fp32")
        yield Candidate(f"ONNX Runtime {precision.upper()} {where}", "onnxruntime", precision,
                        partial(OnnxBackend, f, device), isolated=(f, "ort") if where == "CPU" else None)
        if _has_openvino() and precision != "fp16":  # the CPU plugin runs FP16 files in f32: nothing to time
            yield Candidate(f"OpenVINO {precision.upper()} CPU", "openvino", precision, partial(OpenVinoBackend, f, cpu),
                            isolated=(f, "openvino"))
            if precision == "fp32":
                half = openvino_half_precision()
                yield Candidate(f"OpenVINO {half.upper()} CPU", "openvino", half,
                                partial(OpenVinoBackend, f, cpu, half=True), isolated=(f, "openvino-half"))
    for e in engines:
        precision = _engine_meta(e).get("precision", "fp16")
        yield Candidate(f"TensorRT {precision.upper()}", "tensorrt", precision,
                        partial(TrtBackend, e, torch.device("cuda")), cuda=True)


def _for_shape(files: list[Path], shape, read) -> list[Path]:
    """The files exported for ``shape`` (their metadata's input shape)."""
    return [f for f in files if tuple(read(f)["input_shape"][2:]) == tuple(shape)]


def val_samples(data: str):
    """``data``'s val split (samples, class names), read once for every row's mAP."""

    cfg = load_data_config(data)
    return scan_split(cfg, "val", progress=False)[0], cfg.names


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m deploy.bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=cli.HelpFormatter,
    )
    p.add_argument(
        "--weights",
        nargs="+",
        required=True,
        help="one or more .pt (e.g. unpruned and pruned), or a scale name (yolov5s) to time a randomly "
        "initialised model of that architecture (latency does not depend on the weights)",
    )
    p.add_argument("--onnx", nargs="*", type=Path, default=[], help="ONNX files to time (default: exported on the fly)")
    p.add_argument("--engine", nargs="*", type=Path, default=[], help="TensorRT engines to time (GPU hosts)")
    p.add_argument("--img", type=int, nargs=2, default=[384, 640], metavar=("H", "W"), help="the input shape timed")
    p.add_argument("--compare-img", type=int, nargs=2, default=None, metavar=("H", "W"), help="a second shape")
    p.add_argument("--batch", type=int, default=1, help="images per run")
    p.add_argument("--iters", type=int, default=200, help="timed runs per row")
    p.add_argument("--warmup", type=int, default=20, help="untimed runs before them")
    p.add_argument("--rounds", type=int, default=5,
                   help="CPU ONNX Runtime / OpenVINO rows: each timed in its own process, interleaved over this many rounds")
    p.add_argument("--data", default=None, help="data.yaml: also measure each row's mAP on its val split")
    p.add_argument("--calib-data", default=None, help="data.yaml: also export and time INT8 (calibrated on its images)")
    p.add_argument("--json", type=Path, default=None, help="write the table (and the machine) here")
    p.add_argument("--plot", type=Path, default=None, help="bar chart PNG (default: beside --json)")
    args = p.parse_args(argv)
    cli.check_img(*args.img, *(args.compare_img or []))
    cli.check_range("--batch", args.batch, 1)
    cli.check_range("--iters", args.iters, 1)
    cli.check_range("--warmup", args.warmup, 0)
    cli.check_range("--rounds", args.rounds, 1)
    if args.json:
        ensure_writable(args.json.parent)
    config = BenchConfig(weights=args.weights, onnx=args.onnx, engine=args.engine, img=tuple(args.img),
                         compare_img=tuple(args.compare_img) if args.compare_img else None, batch=args.batch,
                         iters=args.iters, warmup=args.warmup, rounds=args.rounds, data=args.data,
                         calib_data=args.calib_data)
    result = bench(config)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    plot = args.plot or (args.json.with_suffix(".png") if args.json else None)
    if plot:
        plot_rows(result["rows"], plot)
    return 0


@dataclass
class BenchConfig:
    """What ``python -m deploy.bench`` measures (its flags, one field each)."""

    weights: list[str]
    img: tuple[int, int] = (384, 640)
    compare_img: tuple[int, int] | None = None
    onnx: list[Path] = field(default_factory=list)
    engine: list[Path] = field(default_factory=list)
    batch: int = 1
    iters: int = 200
    warmup: int = 20
    rounds: int = 5
    data: str | None = None
    calib_data: str | None = None


def bench(args: BenchConfig) -> dict:
    """The latency table (and each row's mAP with ``data``) as printed by ``python -m deploy.bench``:
    {"machine", "iters", "warmup", "rounds", "rows"}."""
    shapes = [tuple(args.img)] + ([tuple(args.compare_img)] if args.compare_img else [])
    rows = []
    scored = val_samples(args.data) if args.data else None
    to_score = []  # (row, backend, shape), scored after every timing child ran (docs/BENCHMARKS.md, INT8 round 4:
    # a process that had scored died by SIGSEGV starting its next child)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        image = _test_image(tmp)
        for w in (weights_or_scale(w, tmp) for w in args.weights):
            for shape in shapes:
                # given files belong to the shape they were exported for (so --engine survives --compare-img)
                onnx_files = _for_shape(args.onnx, shape, read_metadata) if len(args.weights) == 1 else []
                engines = _for_shape(args.engine, shape, _engine_meta) if len(args.weights) == 1 else []
                alone = []
                for c in _backends(w, shape, args.batch, onnx_files, engines, tmp, args.calib_data):
                    backend = None if c.isolated else c.make()
                    r = ({"backend": c.label, "model": None, "end_to_end": None} if c.isolated else  # time_alone fills
                         bench_backend(c.label, backend, shape, args.batch, image, args.warmup, args.iters, c.cuda))
                    rows.append({"weights": str(w), "shape": list(shape), "batch": args.batch, "runtime": c.runtime,
                                 "precision": c.precision, **r})
                    to_score += [(rows[-1], backend, c.make, shape)] if scored else []
                    alone += [(rows[-1], c.isolated)] if c.isolated else []
                time_alone(alone, image, (args.batch, 3, *shape), min(args.rounds, args.iters), args.iters, args.warmup)
        for row, backend, make, shape in to_score:  # a CPU row's backend is built here, after its timing children
            row["accuracy"] = fixed_shape_map(backend or make(), *scored, shape)
    print(format_table(rows))
    result = {
        "machine": machine_info(),
        "iters": args.iters,
        "warmup": args.warmup,
        "rounds": min(args.rounds, args.iters),
        "rows": rows,
    }
    if not torch.cuda.is_available():
        print("TensorRT and CUDA rows skipped: no CUDA GPU on this machine")
    return result


def _engine_meta(path: Path) -> dict:
    meta = path.with_suffix(".json")
    if not meta.is_file():
        raise UsageError(f"{path}: no {meta.name} beside the engine; build engines with python -m deploy.trt")
    return json.loads(meta.read_text())


def format_table(rows: list[dict]) -> str:
    head = (
        f"{'model':<14} {'shape':>8} {'backend':<24} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'img/s':>7} {'x ORT32':>7} "
        f"{'e2e p50':>8} {'e2e img/s':>9} {'mAP50-95':>9}"
    )
    lines = [head]
    for r in rows:
        m, e = r["model"], r["end_to_end"]
        lines.append(
            f"{Path(r['weights']).stem[:14]:<14} {r['shape'][0]}x{r['shape'][1]:<4} {r['backend']:<24} "
            f"{m['p50_ms']:>8.1f} {m['p90_ms']:>8.1f} {m['p99_ms']:>8.1f} {m['images_per_s']:>7.1f} "
            f"{(format(m['x_ort_fp32'], '.2f') if m.get('x_ort_fp32') else '-'):>7} "
            f"{e['p50_ms']:>8.1f} {e['images_per_s']:>9.1f} "
            f"{(format(r['accuracy']['map50_95'], '.4f') if 'accuracy' in r else '-'):>9}"
        )
    return "\n".join(lines)


def plot_rows(rows: list[dict], path: Path) -> None:
    import matplotlib  # lazy: the plot only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{Path(r['weights']).stem} {r['shape'][0]}x{r['shape'][1]}\n{r['backend']}" for r in rows]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(rows) + 1.5))
    ax.barh(y - 0.2, [r["model"]["p50_ms"] for r in rows], 0.4, label="model")
    ax.barh(y + 0.2, [r["end_to_end"]["p50_ms"] for r in rows], 0.4, label="end to end")
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="p50 latency (ms)", title=f"Latency, batch {rows[0]['batch']}" if rows else "Latency")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    cli.run(main)
