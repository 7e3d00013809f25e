"""Sensitivity scan: what removing a share of one group at a time costs, and what it saves.

For each prunable group, ``share`` of its channels (lowest |gamma|) is removed, with the mean
fold, in a copy of the model; the copy is evaluated. The table (mAP drop and GFLOPs saved per
group) shows where a model has room and where it has none, before any fine-tuning is spent.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from detect.model import count_gflops
from prune.select import LayerPlan, top_channels
from prune.surgery import group_scores, remove


def scan(model, evaluate, calib, share: float, shape: tuple[int, int], progress: bool = True) -> list[dict]:
    import torch  # lazy: the scan only
    from tqdm import tqdm

    base = evaluate(model)["map50_95"]
    gflops0 = count_gflops(model, shape)
    groups = group_scores(model, torch.zeros(1, 3, 64, 64))
    rows = []
    for name, _, scores in tqdm(groups, desc="sensitivity", disable=None if progress else True):
        keep_n = max(1, round(len(scores) * (1 - share)))
        keep = top_channels(scores, keep_n)
        plans = [LayerPlan(name, len(scores), keep)]
        pruned = remove(copy.deepcopy(model), plans, calib)
        m = evaluate(pruned)["map50_95"]
        rows.append({"group": name, "channels": len(scores), "removed": len(scores) - keep_n,
                     "map50_95": m, "drop": base - m, "gflops_saved": 1 - count_gflops(pruned, shape) / gflops0})
    return rows


def write(out: Path, rows: list[dict], share: float) -> None:
    import matplotlib  # lazy: plots only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "sensitivity.json").write_text(json.dumps(rows, indent=2))
    lines = [f"# Sensitivity: {share:.0%} of one group removed at a time (mean fold, no fine-tuning)", "",
             "| group | channels | mAP50-95 drop | GFLOPs saved |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['group']} | {r['channels']} | {r['drop']:.4f} | {r['gflops_saved']:.1%} |"
              for r in sorted(rows, key=lambda r: -r["drop"])]
    (out / "sensitivity.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([100 * r["gflops_saved"] for r in rows], [r["drop"] for r in rows], s=12)
    for r in sorted(rows, key=lambda r: -r["drop"])[:6]:
        ax.annotate(r["group"], (100 * r["gflops_saved"], r["drop"]), fontsize=6)
    ax.set(xlabel="GFLOPs saved (%)", ylabel="mAP50-95 drop", title=f"Removing {share:.0%} of one group at a time")
    fig.tight_layout()
    fig.savefig(out / "sensitivity.png", dpi=90)
    plt.close(fig)
