"""Rule-based training advice. Each recommendation quotes the figure that triggered it."""

from __future__ import annotations

from collections import Counter

from detect.geometry import rect_shape

SLICE_SMALL_SHARE = 0.30  # slice when this share of boxes becomes COCO-small at input size
IMBALANCE_SAMPLING = 10.0  # class-balanced sampling above this max/min ratio
HEAD_SHARE_FOCAL = 0.5  # focal loss when one class holds this share of boxes
MOSAIC_CUT_SHARE = 0.25  # caution on mosaic above this share of boxes cut
BPR_OK = 0.98  # YOLOv5 keeps its default anchors above this best possible recall


def _rec(setting: str, value, because: str) -> dict:
    return {"setting": setting, "value": value, "because": because}


def recommend(summary: dict, images_hw: list[tuple[int, int]], img: int) -> list[dict]:
    recs = []
    sizes = summary["image_sizes"]
    (h, w), n = Counter(images_hw).most_common(1)[0]
    share = n / len(images_hw)
    shape = rect_shape(h, w, img)
    if share >= 0.5 and shape[0] != shape[1]:
        recs.append(
            _rec(
                "input_shape",
                f"{shape[0]}x{shape[1]}",
                f"{share:.0%} of images are {w}x{h}; at img {img} they fit {shape[0]}x{shape[1]} "
                f"(rectangular, {1 - shape[0] * shape[1] / img**2:.0%} fewer pixels than {img}x{img})",
            )
        )
    else:
        recs.append(
            _rec(
                "input_shape",
                f"{img}x{img}",
                f"no single size dominates (most common {w}x{h} is {share:.0%}; "
                f"{sizes['orientation']['landscape']:.0%} landscape): train square, validate rectangular",
            )
        )

    boxes = summary["box_sizes"]
    small_in, small_native = boxes["coco_at_input"]["small"], boxes["coco_native"]["small"]
    long_side = max(h, w)
    if small_in >= SLICE_SMALL_SHARE and long_side > 1.5 * img:
        window = img
        recs.append(
            _rec(
                "sliced_training",
                {"window": window, "min_visible": 0.6},
                f"{small_in:.0%} of boxes are COCO-small after resizing to {img} (vs {small_native:.0%} at "
                f"native resolution): train on {window}x{window} windows cut from the {long_side}-px images, "
                f"or raise --img",
            )
        )
    else:
        recs.append(
            _rec(
                "sliced_training",
                None,
                f"{small_in:.0%} of boxes are COCO-small at input size {img}: whole images suffice",
            )
        )

    cls = summary["classes"]
    ratio = cls["imbalance_ratio"] or 1.0
    if ratio >= IMBALANCE_SAMPLING:
        recs.append(
            _rec(
                "class_balanced_sampling",
                True,
                f"imbalance ratio {ratio:.0f}:1 (max/min boxes per class); rare: "
                f"{', '.join(cls['rare_classes'][:6]) or 'none'}",
            )
        )
    if cls["head_share"] >= HEAD_SHARE_FOCAL:
        recs.append(
            _rec("focal_loss", {"gamma": 1.5}, f"'{cls['head_class']}' holds {cls['head_share']:.0%} of all boxes")
        )

    cut = summary["mosaic_cut_share"]
    if cut >= MOSAIC_CUT_SHARE:
        recs.append(
            _rec(
                "mosaic",
                {"probability": 0.5, "close_last_epochs": 10},
                f"a mosaic crop would cut {cut:.0%} of boxes (large, dense figures); lower its probability "
                f"and switch it off for the last epochs",
            )
        )
    else:
        recs.append(
            _rec(
                "mosaic",
                {"probability": 1.0, "close_last_epochs": 10},
                f"a mosaic crop would cut only {cut:.0%} of boxes",
            )
        )

    anchors = summary["anchors"]
    default_bpr = anchors["default"]["bpr"]
    if "fitted" in anchors and default_bpr < BPR_OK and anchors["fitted"]["bpr"] > default_bpr:
        recs.append(
            _rec(
                "anchors",
                "anchors.yaml",
                f"default anchors reach BPR {default_bpr:.3f} < {BPR_OK}; fitted ones {anchors['fitted']['bpr']:.3f}",
            )
        )
    else:
        recs.append(
            _rec("anchors", "default", f"default anchors already reach BPR {default_bpr:.3f} (>= {BPR_OK} is enough)")
        )

    occ = summary["occlusion"]
    if occ["share_boxes_overlapped"] >= 0.3:
        recs.append(
            _rec(
                "nms_iou",
                0.6,
                f"{occ['share_boxes_overlapped']:.0%} of boxes overlap another: crowded scenes; keep NMS IoU "
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
