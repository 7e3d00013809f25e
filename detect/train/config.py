"""The run configuration: one dataclass built from the command line or from code.

``TrainConfig`` holds what a run needs and nothing else (resolved hyperparameters included),
and is saved inside ``last.pt``, so ``--resume PATH`` rebuilds it from the checkpoint alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from detect import cli
from detect.errors import UsageError
from detect.hyp import DEFAULT as DEFAULT_HYP
from detect.hyp import TRAIN_SECTION, Hyp, load_hyp, overlay_saved, train_options
from detect.weights import load_checkpoint

AMP_CHOICES = ("fp16", "bf16", "off")


@dataclass
class TrainConfig:
    data: str
    out: Path = Path("runs/train/exp")
    model: str | None = None  # yolov5n/s/m/l/x, an arch .yaml/.json or a checkpoint; None: that of --weights
    weights: str = ""  # initial weights ('' = random initialisation)
    anchors: str | None = None
    teacher: str | None = None  # distil from this model
    img: int = 640
    val_img: int | None = None  # validation size when it differs (sliced training: the size inference will use)
    epochs: int = 100
    batch: int = 16  # total across DDP processes
    hyp: Hyp = field(default_factory=load_hyp)
    device: str | None = None
    amp: str = "fp16"  # on CUDA; on CPU only bf16 applies (autocast)
    sync_bn: bool = False
    workers: int = 2
    cache: str = "none"
    patience: int = 100
    val_interval: int = 1
    seed: int = 0
    head_transfer: bool = True  # keep the pretrained head's rows for classes found by name
    resume_from: Path | None = None  # a last.pt; set by ``resumed``
    quiet: bool = False  # no progress bars (library use)
    save_period_min: float = 10.0  # a recovery last.pt every N minutes mid-epoch (0: at epoch ends and on signals)

    def __post_init__(self):
        self.out = Path(self.out)
        check_numbers(self)

    def to_plain(self) -> dict:
        """What goes into last.pt: plain types only (torch.load weights_only reads it)."""
        d = dataclasses.asdict(self)
        d["out"] = str(self.out)
        d.pop("resume_from")
        return d

    @classmethod
    def resumed(cls, last: Path, device: str | None = None, workers: int | None = None) -> TrainConfig:
        """The configuration saved in ``last`` (a run's weights/last.pt); device and workers may change."""

        state = load_checkpoint(last).get("train")
        if not state:
            raise UsageError(
                f"--resume: {last} holds no training state (a best.pt or foreign weights); "
                "start a new run with --weights instead"
            )
        saved = dict(state.get("config") or state["args"])  # "args": checkpoints written before fit()
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in saved.items() if k in known and k not in ("hyp", "resume_from")}
        kw["hyp"] = overlay_saved(state["hyp"], str(last))
        kw["out"] = last.parent.parent
        if device is not None:
            kw["device"] = device
        if workers is not None:
            kw["workers"] = workers
        cfg = cls(**kw)
        cfg.resume_from = last
        return cfg


def check_numbers(cfg: TrainConfig) -> None:
    """Out-of-range numbers are usage errors before any work starts."""
    for name, low in (("img", 32), ("epochs", 1), ("batch", 1), ("val_interval", 1)):
        if getattr(cfg, name) < low:
            raise UsageError(f"--{name.replace('_', '-')} must be at least {low}, got {getattr(cfg, name)}")
    for name in ("workers", "patience", "save_period_min"):
        if getattr(cfg, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(cfg, name)}")
    if cfg.amp not in AMP_CHOICES:
        raise UsageError(f"--amp must be one of {', '.join(AMP_CHOICES)}, got {cfg.amp!r}")
    if cfg.val_img is not None and cfg.val_img < 32:
        raise UsageError(f"--val-img must be at least 32, got {cfg.val_img}")
    for name in ("img", "val_img"):
        size = getattr(cfg, name)
        if size is not None and size % 32:
            new = math.ceil(size / 32) * 32
            print(f"warning: --{name.replace('_', '-')} {size} is not a multiple of 32; using {new}", file=sys.stderr)
            setattr(cfg, name, new)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m detect.train",
        description="Train YOLOv5 on a data.yaml (from official or our weights, or from scratch). "
        "Writes OUT/weights/{last,best}.pt, results.csv/png, metrics.json and TensorBoard events.",
        epilog="Resume an interrupted run from its checkpoint alone: python -m detect.train --resume OUT/weights/last.pt",
        formatter_class=cli.HelpFormatter,
    )
    add_train_options(p)
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="LAST_PT",
        help="continue a run exactly where it stopped: the given last.pt, or OUT/weights/last.pt",
    )
    return p




def add_train_options(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """The options of one run, on ``p``; detect.tune adds them too (one run per trial), less ``skip``."""

    def add(flag: str, **kw) -> None:
        if flag[2:] not in skip:
            p.add_argument(flag, **kw)

    add("--data", help="data.yaml (required unless --resume)")
    add(
        "--model",
        default=None,
        help="yolov5n/s/m/l/x, an arch spec (.yaml/.json) or a checkpoint whose architecture to build "
        "(default: the --weights architecture, else yolov5s)",
    )
    add("--weights", default="", help="initial weights (ours or official YOLOv5 .pt); '' = from scratch")
    add("--anchors", default=None, help="anchors.yaml from python -m analysis")
    add("--teacher", default=None, help="distil from this model (same head layout); see distill_* in the hyp")
    add("--img", type=int, default=640, help="training input size (and validation size unless --val-img)")
    add(
        "--val-img",
        type=int,
        default=None,
        help="validation input size, e.g. the full-image size at which sliced training's scale is kept",
    )
    add("--epochs", type=int, default=100, help="training epochs (the schedule's length)")
    add("--batch", type=int, default=16, help="total batch size (split across DDP processes)")
    add("--out", type=Path, default=Path("runs/train/exp"),
                   help="run folder: weights/last.pt and best.pt, results.csv/png, metrics.json, TensorBoard events")
    add("--hyp", type=Path, default=DEFAULT_HYP,
                   help="hyperparameter YAML (keys: configs/hyp/default.yaml); python -m analysis's recommended.yaml "
                   "also sets --img, --val-img and --anchors where they are not given")
    add("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override hyperparameters, e.g. sam=true")
    add("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    add("--amp", choices=AMP_CHOICES, default="fp16", help="mixed precision (CUDA: fp16/bf16; CPU: bf16)")
    add("--sync-bn", action="store_true", help="SyncBatchNorm across DDP processes (CUDA)")
    add("--workers", type=int, default=2, help="data-loading processes per training process")
    add("--cache", choices=["none", "ram"], default="none", help="keep decoded images in memory")
    add("--patience", type=int, default=100, help="stop after this many epochs without improvement")
    add("--val-interval", type=int, default=1, help="validate every N epochs (and always at the end)")
    add("--seed", type=int, default=0, help="seeds the model's initialisation, sampling and augmentation")
    add("--save-period-min", type=float, default=10.0,
                   help="also write last.pt every N minutes within an epoch, so a SIGKILL or an out-of-memory kill "
                   "loses at most that long (0: only at epoch ends and on SIGINT/SIGTERM)")
    add(
        "--no-head-transfer",
        action="store_true",
        help="re-initialise the output layers even when the data's class names are among the weights' names",
    )


# Options a resumed run takes from its checkpoint: repeating them is fine, changing them is an error.
_SAVED_OPTIONS = {"data": "data", "model": "model", "weights": "weights", "anchors": "anchors", "teacher": "teacher",
                  "img": "img", "val-img": "val_img", "epochs": "epochs", "batch": "batch", "amp": "amp", "sync-bn": "sync_bn",
                  "cache": "cache", "patience": "patience", "val-interval": "val_interval", "seed": "seed"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.given = {a.split("=", 1)[0][2:] for a in (argv if argv is not None else sys.argv[1:]) if a.startswith("--")}
    return args


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The namespace of ``parse_args`` as a TrainConfig (a resumed run's comes from its last.pt)."""
    given = getattr(args, "given", set())
    if args.resume:
        last = Path(args.resume) if isinstance(args.resume, str) else args.out / "weights" / "last.pt"
        if not last.is_file():
            raise UsageError(f"--resume: {last} not found; point --resume at a run's weights/last.pt")
        cfg = TrainConfig.resumed(last, args.device if "device" in given else None,
                                  args.workers if "workers" in given else None)
        if "save-period-min" in given:  # how often to save is not part of the run's result
            cfg.save_period_min = args.save_period_min
        clash = _resume_conflicts(args, given, cfg)
        if clash:
            raise UsageError(
                f"--resume continues the saved run with its own settings, but {'; '.join(clash)}. Drop these "
                f"options, or start a new run with --weights {last} to train with other settings"
            )
        return cfg
    if not args.data:
        raise UsageError("--data is required (a data.yaml), unless --resume continues a saved run")
    for key, value in train_options(args.hyp).items():  # a recipe's options, where the command line is silent
        if key.replace("_", "-") not in given:
            setattr(args, key, value)
            print(f"{key.replace('_', '-')} {value} (from {args.hyp})")
    return TrainConfig(
        data=args.data,
        out=args.out,
        model=args.model,
        weights=args.weights or "",
        anchors=str(args.anchors) if args.anchors else None,
        teacher=args.teacher,
        img=args.img,
        val_img=args.val_img,
        epochs=args.epochs,
        batch=args.batch,
        hyp=load_hyp(args.hyp, parse_overrides(args.set)),
        device=args.device,
        amp=args.amp,
        sync_bn=args.sync_bn,
        workers=args.workers,
        cache=args.cache,
        patience=args.patience,
        val_interval=args.val_interval,
        seed=args.seed,
        head_transfer=not args.no_head_transfer,
        save_period_min=args.save_period_min,
    )


def embedded_config(args: argparse.Namespace, argv: list[str] | None, out: Path, **values) -> TrainConfig:
    """The TrainConfig of a command that carries detect.train's options (``add_train_options``) beside its own
    (detect.tune, detect.kfold): ``out`` and ``values`` fill what that command names differently or skips."""
    given = {a.split("=", 1)[0][2:] for a in (sys.argv[1:] if argv is None else argv) if a.startswith("--")}
    run_args = argparse.Namespace(**{**vars(args), **values, "out": out, "resume": False})
    run_args.given = given - {"out", *(k.replace("_", "-") for k in values)}  # a recipe's train: section fills the rest
    return config_from_args(run_args)


def _resume_conflicts(args: argparse.Namespace, given: set[str], cfg: TrainConfig) -> list[str]:
    """Each option given with --resume that would change the saved run, described."""
    out = []
    for option, name in _SAVED_OPTIONS.items():
        if option in given and str(getattr(args, name)) != str(getattr(cfg, name)):
            out.append(f"--{option} {getattr(args, name)} differs from the saved {getattr(cfg, name)}")
    if "no-head-transfer" in given and cfg.head_transfer:
        out.append("--no-head-transfer differs from the saved run")
    wanted = {}
    if "hyp" in given:  # only the keys the file sets
        hyp = load_hyp(args.hyp)
        wanted.update({k: getattr(hyp, k) for k in _file_keys(args.hyp)})
    if "set" in given:
        wanted.update(parse_overrides(args.set))
    for key, value in wanted.items():
        saved = getattr(cfg.hyp, key, None)
        if saved != value and not (isinstance(value, int | float) and saved == float(value)):
            out.append(f"hyperparameter {key}={value!r} differs from the saved {saved!r}")
    return out


def _file_keys(path: Path) -> set[str]:
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) if Path(path).is_file() else {}
    return set(raw) - {TRAIN_SECTION} if isinstance(raw, dict) else set()


def parse_overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"--set {pair!r}: expected KEY=VALUE")
        k, v = pair.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out
