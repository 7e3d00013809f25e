"""YOLOv5 (v6.0-v7.0 architecture) built from an explicit, prunable channel spec.

The network is written out layer by layer instead of being parsed from a YAML file: the
wiring of YOLOv5 never changes between n/s/m/l/x, only its widths and depths do. Every
convolution's output width comes from ``arch["channels"]`` (a name -> int mapping) so a
pruned network is rebuilt exactly from its spec plus its state dict. Module names and
indices follow the official layout (``model.0.conv.weight`` ... ``model.24.m.2.bias``)
so official weights load by name.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from detect.cli import UsageError
from detect.geometry import DEFAULT_ANCHORS, STRIDES

# Published YOLOv5 multiples: (depth_multiple, width_multiple).
SCALES = {
    "yolov5n": (0.33, 0.25),
    "yolov5s": (0.33, 0.50),
    "yolov5m": (0.67, 0.75),
    "yolov5l": (1.00, 1.00),
    "yolov5x": (1.33, 1.25),
}
# Official layer table: (base width, repeats) for the C3 blocks; everything else is fixed.
_BACKBONE_WIDTHS = (64, 128, 256, 512, 1024)
_BACKBONE_DEPTHS = (3, 6, 9, 3)


def make_divisible(x: float, divisor: int = 8) -> int:
    return int(math.ceil(x / divisor) * divisor)


# --------------------------------------------------------------------------- blocks
class Conv(nn.Module):
    """Conv2d (no bias) + BatchNorm + SiLU; ``fuse()`` folds the BN into the conv."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class Bottleneck(nn.Module):
    def __init__(self, c1: int, c2: int, hidden: int, shortcut: bool = True):
        super().__init__()
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden, c2, 3, 1)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP bottleneck with 3 convolutions. ``inner`` is ``[(hidden, out), ...]`` per bottleneck."""

    def __init__(self, c1: int, c2: int, c_a: int, c_b: int, inner: list[tuple[int, int]], shortcut: bool):
        super().__init__()
        self.cv1 = Conv(c1, c_a, 1, 1)
        self.cv2 = Conv(c1, c_b, 1, 1)
        blocks, c = [], c_a
        for hidden, out in inner:
            blocks.append(Bottleneck(c, out, hidden, shortcut))
            c = out
        self.m = nn.Sequential(*blocks)
        self.cv3 = Conv(c + c_b, c2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5x5 max-pools (= 5, 9, 13 windows)."""

    def __init__(self, c1: int, c2: int, hidden: int, k: int = 5):
        super().__init__()
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Concat(nn.Module):
    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, 1)


class Detect(nn.Module):
    """Per-level 1x1 heads. ``anchors`` is stored in grid units, as the official buffer is.

    Training mode returns raw maps ``[(b, na, h, w, 5 + nc)]``; eval mode returns decoded
    ``(b, N, 5 + nc)`` rows of cx, cy, w, h (input pixels), objectness, class scores.
    """

    def __init__(self, nc: int, anchors: list[list[float]], ch: list[int], strides=STRIDES):
        super().__init__()
        self.nc, self.no = nc, nc + 5
        self.nl, self.na = len(anchors), len(anchors[0]) // 2
        self.register_buffer("stride", torch.tensor(strides, dtype=torch.float32), persistent=False)
        a = torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2)
        self.register_buffer("anchors", a / self.stride.view(-1, 1, 1))
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self._grids: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def initialize_biases(self) -> None:
        """Prior for a fresh head: ~8 objects per 640 image, uniform classes (YOLOv5 paper recipe)."""
        for conv, s in zip(self.m, self.stride.tolist()):
            b = conv.bias.data.view(self.na, -1)
            b[:, 4] += math.log(8 / (640 / s) ** 2)
            b[:, 5:] += math.log(0.6 / (self.nc - 0.99)) if self.nc > 1 else 0.0

    def _grid(self, i: int, h: int, w: int, ref: torch.Tensor):
        key = (i, h, w, ref.device, ref.dtype)
        if key not in self._grids:
            y, x = torch.meshgrid(
                torch.arange(h, device=ref.device, dtype=ref.dtype),
                torch.arange(w, device=ref.device, dtype=ref.dtype),
                indexing="ij",
            )
            grid = torch.stack((x, y), 2).view(1, 1, h, w, 2) - 0.5
            anchor_grid = (self.anchors[i] * self.stride[i]).to(ref.dtype).view(1, self.na, 1, 1, 2)
            self._grids[key] = (grid, anchor_grid)
        return self._grids[key]

    def forward(self, xs: list[torch.Tensor], raw: bool = False):
        maps = []
        for i, x in enumerate(xs):
            b, _, h, w = x.shape
            maps.append(self.m[i](x).view(b, self.na, self.no, h, w).permute(0, 1, 3, 4, 2).contiguous())
        if self.training or raw:
            return maps
        return self.decode(maps)

    def decode(self, maps: list[torch.Tensor]) -> torch.Tensor:
        out = []
        for i, p in enumerate(maps):
            b, _, h, w, _ = p.shape
            grid, anchor_grid = self._grid(i, h, w, p)
            xy, wh, conf = p.sigmoid().split((2, 2, self.nc + 1), 4)
            xy = (xy * 2 + grid) * self.stride[i]
            wh = (wh * 2) ** 2 * anchor_grid
            out.append(torch.cat((xy, wh, conf), 4).view(b, -1, self.no))
        return torch.cat(out, 1)

    def _apply(self, fn, *args, **kwargs):
        self._grids.clear()  # cached grids follow device/dtype changes
        return super()._apply(fn, *args, **kwargs)


# --------------------------------------------------------------------------- arch spec
def default_arch(name: str = "yolov5s", nc: int = 80, anchors: list | None = None) -> dict:
    """The arch dict of a published scale: multiples, nc, anchors and the full channel spec."""
    if name not in SCALES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(SCALES)}")
    depth, width = SCALES[name]
    arch = {
        "name": name,
        "nc": int(nc),
        "depth_multiple": depth,
        "width_multiple": width,
        "anchors": [list(map(float, a)) for a in (anchors or DEFAULT_ANCHORS)],
        "strides": list(STRIDES),
    }
    arch["channels"] = channel_spec(YOLOv5(arch))
    return arch


def channel_spec(model: nn.Module) -> dict[str, int]:
    """Output width of every Conv block, by module name: the pruning degrees of freedom."""
    return {name: m.conv.out_channels for name, m in model.named_modules() if isinstance(m, Conv)}


class YOLOv5(nn.Module):
    """YOLOv5 detector. ``arch`` keys: nc, depth_multiple, width_multiple, anchors, strides, channels.

    ``channels`` may be partial or absent; missing entries take the published width.
    """

    def __init__(self, arch: dict):
        super().__init__()
        self.arch = dict(arch)
        nc, gd, gw = arch["nc"], arch["depth_multiple"], arch["width_multiple"]
        spec: dict[str, int] = dict(arch.get("channels") or {})

        def width(c: int) -> int:
            return make_divisible(c * gw, 8)

        def depth(n: int) -> int:
            return max(round(n * gd), 1)

        def out(name: str, default: int) -> int:
            return int(spec.get(name, default))

        def conv(i: int, c1: int, c2: int, k: int, s: int, p: int | None = None) -> Conv:
            return Conv(c1, out(f"model.{i}", c2), k, s, p)

        def c3(i: int, c1: int, c2: int, n: int, shortcut: bool) -> C3:
            pre, h = f"model.{i}", c2 // 2
            c_a = out(f"{pre}.cv1", h)
            inner, c = [], c_a
            for j in range(n):
                hid = out(f"{pre}.m.{j}.cv1", h)
                # A residual bottleneck must give back exactly its input width.
                c = c if shortcut else out(f"{pre}.m.{j}.cv2", h)
                inner.append((hid, c))
            return C3(c1, out(f"{pre}.cv3", c2), c_a, out(f"{pre}.cv2", h), inner, shortcut)

        w = [width(c) for c in _BACKBONE_WIDTHS]
        d = [depth(n) for n in _BACKBONE_DEPTHS]
        layers: list[nn.Module] = []

        def add(m: nn.Module) -> int:
            layers.append(m)
            return _out_channels(m)

        # Backbone (CSP-Darknet53): P1/2 ... P5/32, then SPPF.
        c = add(conv(0, 3, w[0], 6, 2, 2))
        c = add(conv(1, c, w[1], 3, 2))
        c = add(c3(2, c, w[1], d[0], True))
        c = add(conv(3, c, w[2], 3, 2))
        p3 = c = add(c3(4, c, w[2], d[1], True))
        c = add(conv(5, c, w[3], 3, 2))
        p4 = c = add(c3(6, c, w[3], d[2], True))
        c = add(conv(7, c, w[4], 3, 2))
        c = add(c3(8, c, w[4], d[3], True))
        c = add(SPPF(c, out("model.9.cv2", w[4]), out("model.9.cv1", c // 2)))
        # Head (PAN): top-down then bottom-up, concatenating with the layers named below.
        h10 = c = add(conv(10, c, w[3], 1, 1))
        layers += [nn.Upsample(scale_factor=2.0, mode="nearest"), Concat()]  # 11, 12 (+6)
        c = add(c3(13, c + p4, w[3], d[0], False))
        h14 = c = add(conv(14, c, w[2], 1, 1))
        layers += [nn.Upsample(scale_factor=2.0, mode="nearest"), Concat()]  # 15, 16 (+4)
        o17 = c = add(c3(17, c + p3, w[2], d[0], False))
        c = add(conv(18, c, w[2], 3, 2))
        layers.append(Concat())  # 19 (+14)
        o20 = c = add(c3(20, c + h14, w[3], d[0], False))
        c = add(conv(21, c, w[3], 3, 2))
        layers.append(Concat())  # 22 (+10)
        o23 = add(c3(23, c + h10, w[4], d[0], False))
        layers.append(Detect(nc, arch["anchors"], [o17, o20, o23], tuple(arch.get("strides", STRIDES))))
        self.model = nn.ModuleList(layers)
        self.arch["channels"] = channel_spec(self)
        self.nc = nc

    @property
    def detect(self) -> Detect:
        return self.model[24]

    @property
    def stride(self) -> torch.Tensor:
        return self.detect.stride

    def forward(self, x: torch.Tensor, raw: bool = False):
        """Decoded (b, N, 5 + nc) in eval mode; per-level raw maps in training mode or with ``raw``."""
        m = self.model
        x = m[1](m[0](x))
        x = m[3](m[2](x))
        p3 = m[4](x)
        p4 = m[6](m[5](p3))
        x = m[9](m[8](m[7](p4)))
        h10 = m[10](x)
        x = m[13](m[12]([m[11](h10), p4]))
        h14 = m[14](x)
        o17 = m[17](m[16]([m[15](h14), p3]))
        o20 = m[20](m[19]([m[18](o17), h14]))
        o23 = m[23](m[22]([m[21](o20), h10]))
        return m[24]([o17, o20, o23], raw)

    @torch.no_grad()
    def fuse(self) -> YOLOv5:
        """Fold every BatchNorm into its convolution (inference only; irreversible)."""
        for m in self.modules():
            if isinstance(m, Conv) and hasattr(m, "bn"):
                m.conv = nn.utils.fusion.fuse_conv_bn_eval(m.conv.eval(), m.bn.eval())
                del m.bn
                m.forward = m.forward_fused
        return self


def _out_channels(m: nn.Module) -> int:
    if isinstance(m, Conv):
        return m.conv.out_channels
    if isinstance(m, (C3, SPPF)):
        return m.cv3.conv.out_channels if isinstance(m, C3) else m.cv2.conv.out_channels
    raise TypeError(type(m))


def build_model(arch: dict, init: bool = True) -> YOLOv5:
    """Build from an arch dict; ``init`` applies YOLOv5's BN and Detect-bias initialisation."""
    model = YOLOv5(arch)
    if init:
        model.detect.initialize_biases()
    return model


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_gflops(model: nn.Module, shape: tuple[int, int] = (640, 640)) -> float:
    """Forward GFLOPs (2 x multiply-adds) at ``shape`` via ``torch.utils.flop_counter``."""

    was_training = model.training
    model.eval()
    p = next(model.parameters())
    x = torch.zeros(1, 3, *shape, device=p.device, dtype=p.dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 1e9


def model_info(model: nn.Module, shape=(640, 640)) -> str:
    return f"{count_params(model) / 1e6:.2f}M params, {count_gflops(model, shape):.1f} GFLOPs at {shape[0]}x{shape[1]}"


def parse_model_name(name: str) -> str:
    """Accept ``yolov5s``, ``yolov5s.yaml`` or ``YOLOv5S``; raise ValueError otherwise."""
    key = name.lower().removesuffix(".yaml").removesuffix(".pt")
    if key not in SCALES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(SCALES)}")
    return key


__all__ = [
    "SCALES",
    "DEFAULT_ANCHORS",
    "STRIDES",
    "Conv",
    "Bottleneck",
    "C3",
    "SPPF",
    "Concat",
    "Detect",
    "YOLOv5",
    "default_arch",
    "build_model",
    "channel_spec",
    "count_params",
    "count_gflops",
    "model_info",
    "parse_model_name",
    "make_divisible",
]


def main(argv=None) -> int:
    """``python -m detect.model --model yolov5s --nc 12 --img 384 640``: size and cost of a model."""
    import argparse  # lazy: the module's own CLI only

    p = argparse.ArgumentParser(prog="python -m detect.model", description="Parameters and GFLOPs of a YOLOv5 model.")
    p.add_argument("--model", default="yolov5s", help=f"one of {', '.join(SCALES)}")
    p.add_argument("--nc", type=int, default=80, help="number of classes")
    p.add_argument("--img", type=int, nargs=2, default=[640, 640], metavar=("H", "W"), help="input shape for GFLOPs")
    args = p.parse_args(argv)

    try:
        name = parse_model_name(args.model)
    except ValueError as e:
        raise UsageError(str(e)) from None
    model = build_model(default_arch(name, nc=args.nc)).eval()
    print(
        f"{name} (nc={args.nc}): {model_info(model, tuple(args.img))}; fused: {model_info(model.fuse(), tuple(args.img))}"
    )
    return 0


if __name__ == "__main__":
    from detect.cli import run

    run(main)
