"""Least-squares reconstruction of a pruned network from calibration activations.

After the surgery each convolution sees fewer (and, downstream of earlier cuts, slightly different)
input channels. Layer by layer in execution order, the weights of every convolution are refit so that
its output on calibration images matches what the *unpruned* layer produced (He et al. 2017, "Channel
Pruning"; ThiNet): ``min ||X W' + b - Y||^2 + lambda ||W' - W||^2``, where X are the pruned network's
input patches (earlier layers already refit, so errors do not accumulate), Y the unpruned layer's output
on its kept channels, and the ridge term keeps W' near the surgery's weights where the data say little.
The constant b goes into the BatchNorm running mean (or the Detect bias): the mean fold is the special
case with W' fixed, so this subsumes it. One forward per layer, stopped at that layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from detect.optim import batchnorms


class _Stop(Exception):
    """Raised by a capture hook: the rest of the forward pass is not needed."""


def _positions(n: int, length: int, per_image: int, seed: int) -> torch.Tensor:
    """(n, m) output positions sampled per image, the same for the unpruned and the pruned pass."""
    gen = torch.Generator().manual_seed(seed)
    m = min(length, per_image)
    return torch.stack([torch.randperm(length, generator=gen)[:m] for _ in range(n)])


def _patches(conv: nn.Conv2d, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Input patches of ``conv`` at output positions ``pos``, as rows (n*m, C*kh*kw) in the weight's order."""
    cols = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)  # (n, D, L)
    picked = cols.gather(2, pos[:, None, :].expand(-1, cols.shape[1], -1))
    return picked.permute(0, 2, 1).reshape(-1, cols.shape[1])


def _capture(model: nn.Module, conv: nn.Conv2d, x: torch.Tensor, want: str) -> torch.Tensor:
    """The input or output of ``conv`` when ``model`` runs on ``x`` (the pass stops there)."""
    got = {}

    def hook(m, inp, out):
        got["t"] = inp[0] if want == "input" else out
        raise _Stop

    h = conv.register_forward_hook(hook)
    try:
        model(x, raw=True)
    except _Stop:
        pass
    finally:
        h.remove()
    return got["t"]


def batchnorm_of(model: nn.Module) -> dict[nn.Conv2d, nn.BatchNorm2d]:
    """Each Conv block's convolution -> the BatchNorm that follows it (where a compensating constant goes)."""
    return {m.conv: m.bn for m in model.modules() if isinstance(getattr(m, "bn", None), nn.BatchNorm2d)
            and isinstance(getattr(m, "conv", None), nn.Conv2d)}


@torch.no_grad()
def reconstruct(original: nn.Module, pruned: nn.Module, kept_out: dict[str, list[int]], calib: torch.Tensor,
                per_image: int = 256, ridge: float = 1e-3, chunk: int = 16, skip: tuple[str, ...] = ("model.0",)) -> int:
    """Refit every pruned-network convolution (in place); returns how many were refit.

    ``kept_out`` maps a Conv block name (``model.3``, ``model.24.m.0`` for Detect) to the original output
    channels it kept. ``ridge`` is relative to the mean diagonal of X^T X. The stem is skipped: its
    input (the image) never changes, so the surgery's slice is already its best fit.
    """
    original.eval(), pruned.eval()
    bn_of = batchnorm_of(pruned)
    done = 0
    for index, (name, conv) in enumerate(pruned.named_modules()):
        if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
            continue
        block = name.removesuffix(".conv")
        if block in skip:
            continue
        src = original.get_submodule(name)
        keep = kept_out.get(block, list(range(src.out_channels)))
        d = conv.weight[0].numel() + 1
        gram, cross = torch.zeros(d, d, dtype=torch.float64), torch.zeros(d, len(keep), dtype=torch.float64)
        for start in range(0, len(calib), chunk):
            x = calib[start:start + chunk]
            target = _capture(original, src, x, "output")[:, keep]
            n, c, h, w = target.shape
            pos = _positions(n, h * w, per_image, seed=index * 1000 + start)
            y = target.flatten(2).gather(2, pos[:, None, :].expand(-1, c, -1)).permute(0, 2, 1).reshape(-1, c)
            rows = _patches(conv, _capture(pruned, conv, x, "input"), pos)
            rows = torch.cat([rows, torch.ones(len(rows), 1)], 1).double()
            gram += rows.T @ rows
            cross += rows.T @ y.double()
        _solve_into(conv, bn_of.get(conv), gram, cross, ridge)
        done += 1
    return done


def _solve_into(conv: nn.Conv2d, bn: nn.BatchNorm2d | None, gram: torch.Tensor, cross: torch.Tensor,
                ridge: float) -> None:
    """Ridge solve toward the current weights; the constant column goes to the BN mean or the conv bias."""
    out = conv.weight.shape[0]
    prior = torch.cat([conv.weight.reshape(out, -1).double(), torch.zeros(out, 1, dtype=torch.float64)], 1)
    if bn is None and conv.bias is not None:
        prior[:, -1] = conv.bias.double()
    lam = ridge * gram.diagonal()[:-1].mean().clamp_min(1e-12)
    reg = torch.full((gram.shape[0],), float(lam), dtype=torch.float64)
    reg[-1] = 0.0  # the constant is free: it is what the mean fold estimates
    sol = torch.linalg.solve(gram + torch.diag(reg), cross + reg[:, None] * prior.T).T  # (out, d)
    conv.weight.copy_(sol[:, :-1].reshape_as(conv.weight).to(conv.weight.dtype))
    if bn is not None:
        bn.running_mean.sub_(sol[:, -1].to(bn.running_mean.dtype))
    elif conv.bias is not None:
        conv.bias.copy_(sol[:, -1].to(conv.bias.dtype))


@torch.no_grad()
def match_batch_statistics(model: nn.Module, calib: torch.Tensor, chunk: int = 16) -> int:
    """Re-express every BatchNorm around the statistics its input now has, keeping the eval function.

    After compensation a layer's output matches the unpruned one only in the least-squares sense: its
    spread is smaller than the running variance it inherited. Evaluation does not mind, but training-mode
    BatchNorm renormalises by the batch's own spread, so the network fine-tuning starts from is not the one
    that was validated (on the person task at 0.6x GFLOPs, mAP50-95 0.058 right after pruning, 0.002 after
    one recovery epoch). Setting the running statistics to the measured ones (m, s^2) and scaling gamma by
    s / sigma and shifting beta by gamma (m - mu) / sigma leaves every eval-mode output unchanged, while
    batch statistics now agree with the running ones. Returns how many BatchNorms were re-expressed."""
    model.eval()
    bns = batchnorms(model)
    sums = {bn: torch.zeros(3, bn.num_features, dtype=torch.float64) for bn in bns}  # count, sum, sum of squares

    def hook(bn, inp, out):
        x = inp[0].detach().double().transpose(0, 1).flatten(1)
        sums[bn] += torch.stack([torch.full_like(x[:, 0], x.shape[1]), x.sum(1), x.pow(2).sum(1)])

    handles = [bn.register_forward_hook(hook) for bn in bns]
    try:
        for start in range(0, len(calib), chunk):
            model(calib[start:start + chunk])
    finally:
        for h in handles:
            h.remove()
    for bn in bns:
        n, total, squares = sums[bn]
        mean = total / n
        var = (squares / n - mean.pow(2)).clamp_min(0)
        old_std = (bn.running_var.double() + bn.eps).sqrt()
        new_std = (var + bn.eps).sqrt()
        gamma = bn.weight.double()
        bn.bias.add_((gamma * (mean - bn.running_mean.double()) / old_std).to(bn.bias.dtype))
        bn.weight.mul_((new_std / old_std).to(bn.weight.dtype))
        bn.running_mean.copy_(mean.to(bn.running_mean.dtype))
        bn.running_var.copy_(var.to(bn.running_var.dtype))
    return len(bns)
