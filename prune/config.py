"""What a pruning run needs: one dataclass, built from the command line or from code (benchmarks)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from detect import cli
from detect.errors import UsageError
from detect.hyp import DEFAULT as DEFAULT_HYP
from prune.surgery import COMPENSATIONS

STRATEGIES = ("gamma", "uniform", "l1", "taylor")
RECOVER_HYP = DEFAULT_HYP.parent / "recover.yaml"


@dataclass
class PruneConfig:
    weights: Path
    data: str
    out: Path
    ratio: float | None = None  # share of prunable channels removed in all
    threshold: float | None = None  # or: remove channels whose |gamma| is at or below this (one step)
    gflops: float | None = None  # or: prune until this share of the GFLOPs at report_shape is left
    gflops_at_most: bool = False  # never above --gflops (else the closest point when rounding jumps the band)
    strategy: str | None = None  # None: uniform (it won the proof, docs/BENCHMARKS.md), gamma with --threshold
    steps: int = 1
    step_epochs: int = 0  # recovery epochs after each step (through fit)
    max_drop: float | None = None  # stop when mAP50-95 falls more than this below the start
    min_keep: float = 0.1
    round_to: int = 8
    calib_images: int = 64
    taylor_images: int = 128  # labelled training images the taylor strategy estimates importance on
    compensation: str = "reconstruct"  # or "mean": how removed channels are compensated (prune.surgery)
    match_bn: bool = False  # re-express BatchNorms around the compensated statistics (prune.surgery.remove)
    finetune_epochs: int = 0  # after the last step
    val_interval: int = 1  # recovery validates every N epochs and after its last (its best.pt is chosen on val)
    distill: bool = False
    sensitivity: bool = False
    sensitivity_share: float = 0.25
    img: int = 640
    val_img: int | None = None  # validation size when it differs from the training size (sliced training)
    batch: int = 16
    workers: int = 2
    device: str = "cpu"
    hyp: str | None = None  # None: configs/hyp/recover.yaml
    finetune_hyp: str | None = None  # for --finetune-epochs; None: as hyp
    set: list[str] = field(default_factory=list)
    report_shape: tuple[int, int] = (384, 640)
    latency_iters: int = 50

    def __post_init__(self):
        self.weights, self.out = Path(self.weights), Path(self.out)
        self.strategy = self.strategy or ("gamma" if self.threshold is not None else "uniform")
        self.hyp = self.hyp or str(RECOVER_HYP)
        self.finetune_hyp = self.finetune_hyp or self.hyp
        self.report_shape = tuple(self.report_shape)
        check(self)


def check(c: PruneConfig) -> None:
    if sum(v is not None for v in (c.ratio, c.threshold, c.gflops)) != 1:
        raise UsageError("give exactly one of --ratio, --gflops and --threshold")
    if c.ratio is not None and not 0 < c.ratio < 1:
        raise UsageError(f"--ratio must be in (0, 1), got {c.ratio}")
    if c.gflops is not None and not 0 < c.gflops < 1:
        raise UsageError(f"--gflops must be in (0, 1), got {c.gflops}")
    if c.gflops_at_most and c.gflops is None:
        raise UsageError("--gflops-at-most qualifies --gflops: give --gflops G as well")
    if not 0 <= c.min_keep <= 1:
        raise UsageError(f"--min-keep must be in [0, 1], got {c.min_keep}")
    if c.threshold is not None and c.strategy != "gamma":
        raise UsageError("--threshold is a |gamma| threshold: use it with --strategy gamma")
    if c.compensation not in COMPENSATIONS:
        raise UsageError(f"--compensation must be one of {', '.join(COMPENSATIONS)}, got {c.compensation!r}")
    if c.strategy not in STRATEGIES:
        raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {c.strategy!r}")
    if c.steps > 1 and c.threshold is not None:
        raise UsageError("--steps needs --ratio or --gflops (the target the steps divide)")
    cli.check_img(c.img)
    if c.val_img is not None:
        cli.check_img(c.val_img, flag="--val-img")
    cli.check_img(*c.report_shape, flag="--report-shape")
    cli.check_range("--batch", c.batch, 1)
    cli.check_range("--steps", c.steps, 1)
    for flag, value in (("--finetune-epochs", c.finetune_epochs), ("--step-epochs", c.step_epochs),
                        ("--calib-images", c.calib_images), ("--latency-iters", c.latency_iters)):
        cli.check_range(flag, value, 0)
    cli.check_range("--taylor-images", c.taylor_images, 1)
    cli.check_range("--round-to", c.round_to, 1)
    cli.check_range("--val-interval", c.val_interval, 1)
    cli.check_range("--sensitivity-share", c.sensitivity_share, 0, 1, low_open=True)
    if c.max_drop is not None:
        cli.check_range("--max-drop", c.max_drop, 0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m prune",
        description="Prune a YOLOv5 (network slimming by BatchNorm gamma, or a uniform control), in one or "
        "several steps with recovery training, and report mAP, GFLOPs and latency.",
        formatter_class=cli.HelpFormatter,
    )
    p.add_argument("--weights", required=True, type=Path, help="a checkpoint (ideally sparsity-trained)")
    p.add_argument("--data", required=True, help="data.yaml (validation before/after; recovery training)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--ratio", type=float, help="share of prunable channels to remove in all, in (0, 1)")
    g.add_argument("--gflops", type=float,
                   help="prune until this share of the GFLOPs at --report-shape is left, in (0, 1): the speed budget; "
                   "each of --steps reaches an equal geometric share of it, planned on the model as it is then")
    g.add_argument("--threshold", type=float, help="remove channels whose |gamma| is at or below this")
    p.add_argument("--gflops-at-most", action="store_true",
                   help="treat --gflops as a hard budget: where --round-to makes the GFLOPs jump over [G - 0.01, G], "
                   "take the closest point below G (default: the closest, up to 0.01 above)")
    p.add_argument("--strategy", choices=STRATEGIES, default=None,
                   help="uniform: the same share of every layer by filter L1 norm (the default: it beat gamma in "
                   "docs/BENCHMARKS.md); l1: one global threshold on filter L1 norms relative to their layer's mean "
                   "(widths vary by layer: with --round-to 16, faster on CPUs at the same GFLOPs); taylor: as l1, on "
                   "each channel's first-order loss change measured on --taylor-images training images (what the task "
                   "needs, not how large a filter is: 1.7x l1's mAP after a 0.6x prune of a transferred model, "
                   "docs/BENCHMARKS.md); gamma: one global |gamma| threshold (network slimming, for sparsity-trained "
                   "weights)")
    p.add_argument("--steps", type=int, default=1, help="reach --ratio or --gflops in this many equal geometric steps")
    p.add_argument("--step-epochs", type=int, default=0, help="recovery epochs after each step")
    p.add_argument("--max-drop", type=float, default=None,
                   help="with --steps > 1: stop, keeping the last good model, when mAP50-95 after a step's recovery "
                   "falls more than this below the start")
    p.add_argument("--min-keep", type=float, default=0.1, help="never keep fewer than this share of a layer")
    p.add_argument("--round-to", type=int, default=8, help="round kept channels up to a multiple (1 = off)")
    p.add_argument("--calib-images", type=int, default=64,
                   help="training images used to compensate the removed channels (0 = none: dropped as they are)")
    p.add_argument("--taylor-images", type=int, default=128,
                   help="--strategy taylor: labelled training images its importance is estimated on, each step")
    p.add_argument("--compensation", choices=COMPENSATIONS, default="reconstruct",
                   help="reconstruct: refit every layer by least squares to the unpruned outputs (3x the mAP of the "
                   "mean fold right after pruning, docs/BENCHMARKS.md); mean: fold removed channels' means into consumers")
    p.add_argument("--match-bn", action="store_true",
                   help="after compensation, re-express every BatchNorm around its input's statistics on the "
                   "calibration images (same eval function): helped recovery where those images look like the "
                   "training batches, hurt it under sliced training (docs/BENCHMARKS.md)")
    p.add_argument("--finetune-epochs", type=int, default=0, help="fine-tuning epochs after the last step")
    p.add_argument("--val-interval", type=int, default=1,
                   help="validate recovery and fine-tuning every N epochs and after the last: the kept model is the "
                   "best validated one, so N >= the epochs keeps the last epoch's (no choice made on the validation "
                   "split, and no validation cost per epoch)")
    p.add_argument("--distill", action="store_true", help="recover with the unpruned model as teacher")
    p.add_argument("--sensitivity", action="store_true",
                   help="scan: mAP after removing --sensitivity-share of one group at a time (table + plot)")
    p.add_argument("--sensitivity-share", type=float, default=0.25,
                   help="with --sensitivity: the share of each layer's channels removed to measure its mAP drop")
    p.add_argument("--img", type=int, default=640, help="training input size (and validation size unless --val-img)")
    p.add_argument("--val-img", type=int, default=None, help="validation input size (sliced training: the full-image size)")
    p.add_argument("--batch", type=int, default=16, help="the recovery, fine-tuning and taylor-estimate batch (validation runs at "
                   "detect.val's default, 16, as training does)")
    p.add_argument("--workers", type=int, default=2, help="data-loading processes for recovery and scoring")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N for recovery training and scoring")
    p.add_argument("--hyp", default=None,
                   help="hyperparameter file for recovery and fine-tuning (default: configs/hyp/recover.yaml, "
                   "the fine-tuning recipe at lr0 0.001 without warmup)")
    p.add_argument("--finetune-hyp", default=None,
                   help="hyperparameter file for --finetune-epochs (default: as --hyp); after a large prune, "
                   "configs/hyp/rewind.yaml (the training schedule's learning rate: 0.474 vs 0.399 of 0.572 at 0.6x GFLOPs "
                   "on the synthetic set, docs/BENCHMARKS.md)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="hyperparameters for recovery/fine-tuning")
    p.add_argument("--report-shape", type=int, nargs=2, default=[384, 640], metavar=("H", "W"),
                   help="input shape for GFLOPs and latency")
    p.add_argument("--latency-iters", type=int, default=50, help="ONNX Runtime timing iterations (0 = skip)")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder: pruned.pt, report.json/md and plots, each step's and the fine-tuning's runs")
    return p


def config_from_argv(argv: list[str] | None = None) -> PruneConfig:
    a = build_parser().parse_args(argv)
    return PruneConfig(**{k: v for k, v in vars(a).items()})
