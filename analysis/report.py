"""summary.json, a self-contained report.html (plots embedded) and report.md."""

from __future__ import annotations

import html
import json
from pathlib import Path

from detect.htmldoc import embed_image, page, table


def _md_table(rows: list[list], head: list[str]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def sections(summary: dict) -> list[tuple[str, list[str], list[list], list[str]]]:
    """(title, table head, table rows, plot files) for each part of the report."""
    recs = [[r["setting"], json.dumps(r["value"]), r["because"]] for r in summary["recommendations"]]
    splits = [[s, v["images"], v["instances"], v["background_images"]] for s, v in summary["splits"].items()]
    cls = summary["classes"]
    total = max(sum(cls["counts"].values()), 1)
    classes = [[n, c, f"{c / total:.1%}"] for n, c in sorted(cls["counts"].items(), key=lambda kv: -kv[1])]
    sizes = [[f"{s['width']}x{s['height']}", s["count"], f"{s['share']:.1%}"] for s in summary["image_sizes"]["sizes"]]
    b = summary["box_sizes"]
    box_rows = [[k, f"{b['coco_native'][k]:.1%}", f"{b['coco_at_input'][k]:.1%}"] for k in ("small", "medium", "large")]
    d = summary["density"]
    dense = [[x["path"], x["split"], x["boxes"]] for x in d["densest"]]
    o = summary["occlusion"]
    occ = [
        ["pairs with IoU > 0 per image (mean)", f"{o['pairs_iou_gt_0_per_image']['mean']:.2f}"],
        ["pairs with IoU > 0.5 per image (mean)", f"{o['pairs_iou_gt_0.5_per_image']['mean']:.2f}"],
        ["boxes overlapping another", f"{o['share_boxes_overlapped']:.1%}"],
        ["images with an IoU > 0.5 pair", f"{o['images_with_iou_gt_0.5_pair']:.1%}"],
    ]
    a = summary["anchors"]
    anchors = [
        [k, a[k]["anchors"], f"{a[k]['bpr']:.4f}", f"{a[k]['aat']:.2f}"] for k in ("default", "fitted") if k in a
    ]
    plots = summary["plots"]
    out = [
        ("Recommendations", ["setting", "value", "because"], recs, []),
        ("Splits", ["split", "images", "boxes", "background images"], splits, []),
        (
            f"Classes (imbalance {cls['imbalance_ratio'] or 0:.1f}:1, head '{cls['head_class']}' {cls['head_share']:.0%})",
            ["class", "boxes", "share"],
            classes,
            [plots["classes"]],
        ),
        ("Image sizes", ["size", "images", "share"], sizes, [plots["image_sizes"]]),
        (
            f"Density (mean {d['mean']:.1f}, max {d['max']} boxes per image)",
            ["densest image", "split", "boxes"],
            dense,
            [plots["density"]],
        ),
        (
            f"Box sizes (COCO areas at input {b['input_size']})",
            ["area", "native", "at input"],
            box_rows,
            [plots["box_sizes"], plots["aspect_ratios"], plots["centres"]],
        ),
        ("Occlusion", ["measure", "value"], occ, [plots["occlusion"]]),
        ("Anchors", ["set", "anchors (w, h)", "BPR", "AAT"], anchors, [plots["anchors"]]),
    ]
    if "scenes" in summary:
        sc = summary["scenes"]
        rows = [[k, v, sc["boxes"].get(k, 0)] for k, v in sc["images"].items()]
        out.append(
            (
                f"{sc['column'].capitalize()}s (imbalance {sc['imbalance_ratio']:.1f}:1)",
                [sc["column"], "images", "boxes"],
                rows,
                plots["scenes"],
            )
        )
    if "shift" in summary:
        s = summary["shift"]
        rows = [[n, f"{v:+.2%}"] for n, v in s["class_share_difference"].items()]
        rows.append(["box-size Wasserstein distance (px)", f"{s.get('size_wasserstein_px', float('nan')):.2f}"])
        rows.append(["box-size KS statistic", f"{s.get('size_ks_statistic', float('nan')):.3f}"])
        out.append((f"Shift {s['from']} -> {s['to']}", ["class share change / measure", "value"], rows, []))
    issues = summary["label_issues"]
    rows = [[split, k, v] for split, counts in issues.items() for k, v in counts.items()]
    rows += [[split, "orphan label files", len(v)] for split, v in summary["orphan_labels"].items() if v]
    out.append(("Label problems (full list: issues_<split>.tsv)", ["split", "kind", "count"], rows, []))
    return out


def write_reports(summary: dict, out: Path) -> None:
    body = []
    md = [f"# Dataset analysis: {summary['data']}", ""]
    for title, head, rows, plots in sections(summary):
        body.append(f"<h2>{html.escape(title)}</h2>" + table(rows, head))
        md += [f"## {title}", "", _md_table(rows, head), ""]
        for p in plots:
            body.append(embed_image(out / p))
            md.append(f"![{p}]({p})")
        md.append("")
    (out / "report.html").write_text(page(f"Dataset analysis: {summary['data']}", body))
    (out / "report.md").write_text("\n".join(md))


def console_summary(summary: dict) -> str:
    lines = [f"dataset {summary['data']}"]
    for s, v in summary["splits"].items():
        lines.append(f"  {s}: {v['images']} images, {v['instances']} boxes")
    c = summary["classes"]
    lines.append(
        f"  head class '{c['head_class']}' {c['head_share']:.0%} of boxes; imbalance {c['imbalance_ratio'] or 0:.0f}:1"
    )
    lines.append("recommendations:")
    lines += [f"  {r['setting']}: {json.dumps(r['value'])} - {r['because']}" for r in summary["recommendations"]]
    return "\n".join(lines)
