"""Rule-based training advice. Each recommendation quotes the figure that triggered it."""

from __future__ import annotations

from collections import Counter

from detect.geometry import rect_shape

SLICE_SMALL_SHARE = 0.30  # slice when this share of boxes becomes COCO-small at input size
IMBALANCE_SAMPLING = 10.0  # class-balanced sampling above this max/min ratio
HEAD_SHARE_FOCAL = 0.5  # focal loss when one class holds this share of boxes
MOSAIC_CUT_SHARE = 0.25  # caution on mosaic above this share of boxes cut
# sliced training as the demo measured it: windows twice the network size, validated on whole images at the
# same scale (320 on 640-px windows, 960 on 1920-px images: docs/training.md, "What make demo shows")
SLICE_WINDOW_PER_IMG = 2
BPR_OK = 0.98  # YOLOv5 keeps its default anchors above this best possible recall
CROWD_SHARE = 0.05  # NMS IoU advice when this share of boxes overlaps one of its class at IoU > 0.5


def _rec(setting: str, value, because: str) -> dict:
    return {"setting": setting, "value": value, "because": because}


def recommend(summary: dict, images_hw: list[tuple[int, int]], img: int) -> list[dict]:
    """Every recommendation, in report order: input shape, slicing, class balance, mosaic, anchors,
    crowding and scenes."""
    # grouped by the shape they letterbox to: photos of 550x801..873 are one shape, not 40 sizes of 3% each
    shapes = Counter(rect_shape(h, w, img) for h, w in images_hw)
    shape, n = shapes.most_common(1)[0]
    h, w = Counter(hw for hw in images_hw if rect_shape(*hw, img) == shape).most_common(1)[0][0]
    share = n / len(images_hw)
    return [
        _input_shape(summary, h, w, share, img),
        _slicing(summary, max(h, w), img),
        *_class_balance(summary),
        _mosaic(summary),
        _anchors(summary),
        *_crowding_and_scenes(summary),
    ]


def _input_shape(summary: dict, h: int, w: int, share: float, img: int) -> dict:
    shape = rect_shape(h, w, img)
    if share >= 0.5 and shape[0] != shape[1]:
        return _rec(
            "input_shape",
            f"{shape[0]}x{shape[1]}",
            f"{share:.0%} of images letterbox to {shape[0]}x{shape[1]} at img {img} (most common {w}x{h}) "
            f"(rectangular, {1 - shape[0] * shape[1] / img**2:.0%} fewer pixels than {img}x{img})",
        )
    return _rec(
        "input_shape",
        f"{img}x{img}",
        f"no single size dominates (most common {w}x{h} is {share:.0%}; "
        f"{summary['image_sizes']['orientation']['landscape']:.0%} landscape): train square, validate rectangular",
    )


def _slicing(summary: dict, long_side: int, img: int) -> dict:
    boxes = summary["box_sizes"]
    small_in, small_native = boxes["coco_at_input"]["small"], boxes["coco_native"]["small"]
    if small_in >= SLICE_SMALL_SHARE and long_side > 1.5 * img:
        window = SLICE_WINDOW_PER_IMG * img
        return _rec(
            "sliced_training",
            {"window": window, "min_visible": 0.6},
            f"{small_in:.0%} of boxes are COCO-small after resizing to {img} (vs {small_native:.0%} at "
            f"native resolution): train on {window}x{window} windows cut from the {long_side}-px images "
            f"(resized to {img}), or raise --img",
        )
    return _rec("sliced_training", None, f"{small_in:.0%} of boxes are COCO-small at input size {img}: whole images suffice")


def _class_balance(summary: dict) -> list[dict]:
    cls = summary["classes"]
    ratio = cls["imbalance_ratio"] or 1.0
    recs = []
    if ratio >= IMBALANCE_SAMPLING:
        recs.append(
            _rec(
                "class_balanced_sampling",
                True,
                f"imbalance ratio {ratio:.0f}:1 ({_fewest(cls['counts'])})",
            )
        )
    if cls["head_share"] >= HEAD_SHARE_FOCAL:
        recs.append(
            _rec("focal_loss", {"gamma": 1.5}, f"'{cls['head_class']}' holds {cls['head_share']:.0%} of all boxes")
        )
    return recs


def _fewest(counts: dict[str, int], most: int = 3) -> str:
    """'person 803 boxes; fewest: shorts 47, skirt 143' for the class-balance advice."""
    present = sorted(((c, n) for n, c in counts.items() if c), reverse=True)
    fewest = ", ".join(f"{n} {c}" for c, n in present[::-1][:most])
    return f"{present[0][1]} {present[0][0]} boxes; fewest: {fewest}"


def _mosaic(summary: dict) -> dict:
    cut = summary["mosaic_cut_share"]
    if cut >= MOSAIC_CUT_SHARE:
        return _rec(
            "mosaic",
            {"probability": 0.5, "close_last_epochs": 10},
            f"a mosaic crop would cut {cut:.0%} of boxes (large, dense figures); lower its probability "
            f"and switch it off for the last epochs",
        )
    return _rec("mosaic", {"probability": 1.0, "close_last_epochs": 10}, f"a mosaic crop would cut only {cut:.0%} of boxes")


def _anchors(summary: dict) -> dict:
    anchors = summary["anchors"]
    default_bpr = anchors["default"]["bpr"]
    if "fitted" in anchors and default_bpr < BPR_OK and anchors["fitted"]["bpr"] > default_bpr:
        return _rec(
            "anchors",
            "anchors.yaml",
            f"default anchors reach BPR {default_bpr:.3f} < {BPR_OK}; fitted ones {anchors['fitted']['bpr']:.3f}",
        )
    return _rec("anchors", "default", f"default anchors already reach BPR {default_bpr:.3f} (>= {BPR_OK} is enough)")


def _crowding_and_scenes(summary: dict) -> list[dict]:
    recs = []
    occ = summary["occlusion"]
    crowded = occ["share_boxes_same_class_iou_gt_0.5"]
    if crowded >= CROWD_SHARE:  # NMS works within a class: a garment inside its wearer's box is no crowd
        recs.append(
            _rec(
                "nms_iou",
                0.6,
                f"{crowded:.0%} of boxes overlap one of their own class at IoU > 0.5: crowded scenes; keep NMS IoU "
                f"high enough not to suppress neighbours",
            )
        )
    if "scenes" in summary and summary["scenes"]["imbalance_ratio"] >= 5:
        sc = summary["scenes"]
        rarest = min(sc["images"], key=sc["images"].get)
        recs.append(
            _rec(
                "stratified_validation",
                sc["column"],
                f"{sc['column']} imbalance {sc['imbalance_ratio']:.0f}:1 (rarest: {rarest}, "
                f"{sc['images'][rarest]} images): check mAP per {sc['column']} so rare ones are not hidden",
            )
        )
    return recs
