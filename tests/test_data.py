import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detect.data.config import DataError, load_data_config, yolo_label_path
from detect.data.labels import LabelReport, parse_yolo_label, read_image_header, scan_split


def _image(path: Path, h=40, w=60, mode="RGB", **save):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    im = Image.fromarray(arr)
    if mode == "L":
        im = im.convert("L")
    elif mode == "RGBA":
        im = im.convert("RGBA")
    elif mode == "I;16":
        im = Image.fromarray(arr[..., 0].astype(np.uint16) * 257)  # 16-bit greyscale PNG
    im.save(path, **save)
    return path


def _label(tmp_path, text: str) -> Path:
    p = tmp_path / "a.txt"
    p.write_text(text)
    return p


def _kinds(report):
    return [(i.kind, i.line) for i in report.issues]


def test_yolo_label_every_bad_line(tmp_path):
    path = _label(
        tmp_path,
        "\n".join(
            [
                "0 0.5 0.5 0.2 0.2",  # 1 fine
                "1 0.5 0.5 0.2",  # 2 wrong column count
                "x 0.5 0.5 0.2 0.2",  # 3 non-numeric
                "7 0.5 0.5 0.2 0.2",  # 4 class >= nc (3)
                "1.5 0.5 0.5 0.2 0.2",  # 5 non-integer class
                "1 0.5 0.5 0 0.2",  # 6 zero width
                "1 0.5 0.5 0.2 -0.1",  # 7 negative height
                "2 0.95 0.5 0.2 0.2",  # 8 out of bounds: clipped to x 0.85..1.0
                "2 1.5 0.5 0.2 0.2",  # 9 entirely outside
                "0 0.5 0.5 0.2 0.2",  # 10 duplicate of line 1
                "",  # blank lines are fine
                "1 0.2 0.2 0.1 0.1",  # 12 fine
            ]
        ),
    )
    report = LabelReport()
    classes, boxes = parse_yolo_label(path, nc=3, report=report)
    assert _kinds(report) == [
        ("malformed", 2),
        ("malformed", 3),
        ("bad_class", 4),
        ("bad_class", 5),
        ("non_positive_size", 6),
        ("non_positive_size", 7),
        ("out_of_bounds", 8),
        ("outside", 9),
        ("duplicate", 10),
    ]
    assert classes.tolist() == [0, 2, 1]
    np.testing.assert_allclose(boxes[1], [0.925, 0.5, 0.15, 0.2], atol=1e-6)
    assert all(str(path) + ":" in str(i) for i in report.issues)  # every message names file:line
    assert "check 'names' in data.yaml" in str(report.issues[2])


def test_rounding_overshoot_is_not_an_issue(tmp_path):
    report = LabelReport()
    _, boxes = parse_yolo_label(_label(tmp_path, "0 0.9 0.5 0.200001 0.2\n"), 1, report)
    assert report.issues == [] and boxes[0, 0] + boxes[0, 2] / 2 <= 1.0


def test_missing_and_empty_label_files_are_background(tmp_path):
    report = LabelReport()
    c, b = parse_yolo_label(tmp_path / "none.txt", 3, report)
    assert len(c) == 0 and b.shape == (0, 4)
    parse_yolo_label(_label(tmp_path, "\n\n"), 3, report)
    assert [i.kind for i in report.issues] == ["missing_label", "empty_label"]


def test_images_corrupt_truncated_exif_and_modes(tmp_path):
    report = LabelReport()
    good = _image(tmp_path / "good.jpg")
    assert read_image_header(good, report) == (40, 60) and report.issues == []
    truncated = tmp_path / "trunc.jpg"
    truncated.write_bytes(good.read_bytes()[:-200])
    assert read_image_header(truncated, report) is None
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG not really")
    assert read_image_header(garbage, report) is None
    assert [i.kind for i in report.issues] == ["corrupt_image", "corrupt_image"]
    assert "truncated" in report.issues[0].detail

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    rotated = _image(tmp_path / "rot.jpg", h=40, w=60, exif=exif.tobytes())
    report = LabelReport()
    assert read_image_header(rotated, report) == (60, 40)  # displayed size: w and h swap
    assert [i.kind for i in report.issues] == ["exif_rotated"]
    from detect.data.dataset import load_image

    assert load_image(rotated).shape == (60, 40, 3)  # decoding applies the same rotation

    for mode, name in (("L", "gray.png"), ("RGBA", "rgba.png"), ("I;16", "deep.png")):
        report = LabelReport()
        p = _image(tmp_path / name, mode=mode)
        assert read_image_header(p, report) == (40, 60)
        assert [i.kind for i in report.issues] == ["converted_image"]
        img = load_image(p)
        assert img.shape == (40, 60, 3) and img.dtype == np.uint8


def _dataset(tmp_path, names="[a, b, c]", extra=""):
    for i in range(3):
        _image(tmp_path / "images" / "train" / f"{i}.jpg")
        (tmp_path / "labels" / "train").mkdir(parents=True, exist_ok=True)
        (tmp_path / "labels" / "train" / f"{i}.txt").write_text(f"{i} 0.5 0.5 0.5 0.5\n")
    y = tmp_path / "data.yaml"
    y.write_text(f"path: .\ntrain: images/train\nval: images/train\nnames: {names}\n{extra}")
    return y


def test_data_yaml_variants(tmp_path):
    cfg = load_data_config(_dataset(tmp_path, names="{0: a, 1: b, 2: c}"))
    assert cfg.names == ["a", "b", "c"] and len(cfg.split("train").images) == 3
    lst = tmp_path / "list.txt"
    lst.write_text("images/train/0.jpg\nimages/train/2.jpg\n")
    (tmp_path / "d2.yaml").write_text("train: [list.txt, images/train]\nnames: [a, b, c]\n")
    assert len(load_data_config(tmp_path / "d2.yaml").split("train").images) == 5
    assert yolo_label_path(Path("/x/images/y/images/z/1.jpg")) == Path("/x/images/y/labels/z/1.txt")


@pytest.mark.parametrize(
    "body,message",
    [
        ("train: images/train\n", "no 'names' entry"),
        ("train: images/train\nnames: [a]\nnc: 2\n", "nc is 2 but 1 names"),
        ("train: nowhere\nnames: [a]\n", "is not a folder or a .txt image list"),
        ("train: empty\nnames: [a]\n", "has no images"),
        ("names: [a]\n", "no 'train', 'val' or 'test' entry"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_data_yaml_errors(tmp_path, body, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.yaml").write_text(body)
    with pytest.raises(DataError, match=message) as e:
        load_data_config(tmp_path / "bad.yaml")
    assert "bad.yaml" in str(e.value)


def test_missing_yaml(tmp_path):
    with pytest.raises(DataError, match="no such data file"):
        load_data_config(tmp_path / "nope.yaml")


def test_scan_split_counts_and_cache(tmp_path):
    y = _dataset(tmp_path)
    cfg = load_data_config(y)
    samples, report = scan_split(cfg, "train", progress=False)
    assert [s.classes.tolist() for s in samples] == [[0], [1], [2]] and report.issues == []
    cache_files = list(Path(os.environ["DETECT_CACHE"]).glob("labels-*.npz"))
    assert cache_files
    again, _ = scan_split(cfg, "train", progress=False)
    assert [s.path for s in again] == [s.path for s in samples]
    label = tmp_path / "labels" / "train" / "1.txt"
    label.write_text("1 0.5 0.5 0.5 0.5\n9 0.5 0.5 0.1 0.1\n")  # different size -> new key
    changed, report = scan_split(cfg, "train", progress=False)
    assert [i.kind for i in report.issues] == ["bad_class"]


def test_ignore_regions_are_kept_apart_cached_and_travel_through_training_augmentation(tmp_path):
    """Class -1 lines are ignore regions: not ground truth (classes, boxes), kept in Sample.ignore through the
    label cache, and handed to the loss as class -1 rows through mosaic and the albumentations pipeline."""
    from detect.data.train_dataset import TrainDataset
    from detect.hyp import load_hyp

    y = _dataset(tmp_path)
    (tmp_path / "labels" / "train" / "1.txt").write_text("1 0.3 0.5 0.2 0.4\n-1 0.75 0.5 0.5 1.0\n")
    cfg = load_data_config(y)
    for _ in range(2):  # scanned, then read back from the cache
        samples, report = scan_split(cfg, "train", progress=False)
        assert report.issues == [] and [s.classes.tolist() for s in samples] == [[0], [1], [2]]
        assert [len(s.ignore) for s in samples] == [0, 1, 0]
        np.testing.assert_allclose(samples[1].ignore, [[0.75, 0.5, 0.5, 1.0]])
    plain = TrainDataset(samples, 64, load_hyp(None, {"mosaic": 0.0}), augment_data=False)
    _, labels = plain[1]
    assert labels[:, 1].tolist() == [1, -1]
    np.testing.assert_allclose(labels[1, 2:].numpy(), [0.75, 0.5, 0.5, 40 / 60], atol=0.01)  # letterboxed, rounded
    mosaic = TrainDataset(samples, 64, load_hyp(None, {"mosaic": 1.0}), seed=3)
    rows = torch.cat([mosaic[(i, 0)][1] for i in range(3)])
    assert (rows[:, 1] == -1).any() and set(rows[:, 1].tolist()) <= {-1.0, 0.0, 1.0, 2.0}


def test_corrupt_image_is_excluded_and_listed(tmp_path):
    y = _dataset(tmp_path)
    (tmp_path / "images" / "train" / "1.jpg").write_bytes(b"broken")
    samples, report = scan_split(load_data_config(y), "train", progress=False)
    assert len(samples) == 2 and report.counts() == {"corrupt_image": 1}
    assert "re-export or remove the image" in report.lines()[1]


def test_coco_json_reader(tmp_path):
    for i in range(2):
        _image(tmp_path / "imgs" / f"{i}.jpg", h=100, w=200)
    doc = {
        "images": [
            {"id": 10, "file_name": "0.jpg", "width": 200, "height": 100},
            {"id": 11, "file_name": "gone.jpg", "width": 200, "height": 100},
        ],
        "categories": [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}, {"id": 12, "name": "emu"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 9, "bbox": [20, 10, 40, 20], "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 5, "bbox": [0, 0, 200, 100], "iscrowd": 1},
            {"id": 3, "image_id": 10, "category_id": 12, "bbox": [0, 0, 10, 10], "iscrowd": 0},
        ],
    }
    (tmp_path / "inst.json").write_text(json.dumps(doc))
    (tmp_path / "d.yaml").write_text("val: {images: imgs, coco: inst.json}\nnames: [cat, dog]\n")
    samples, report = scan_split(load_data_config(tmp_path / "d.yaml"), "val", progress=False)
    by_name = {s.path.name: s for s in samples}
    assert by_name["0.jpg"].classes.tolist() == [1]
    np.testing.assert_allclose(by_name["0.jpg"].boxes[0], [0.2, 0.2, 0.2, 0.2])
    assert len(by_name["1.jpg"].classes) == 0
    assert sorted(report.counts()) == ["crowd", "missing_image", "missing_label", "unknown_category"]


def test_voc_xml_reader(tmp_path):
    _image(tmp_path / "JPEGImages" / "x.jpg", h=100, w=200)
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "x.xml").write_text(
        "<annotation><size><width>200</width><height>100</height></size>"
        "<object><name>dog</name><bndbox><xmin>20</xmin><ymin>10</ymin><xmax>60</xmax><ymax>30</ymax></bndbox></object>"
        "<object><name>yak</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
        "</annotation>"
    )
    (tmp_path / "d.yaml").write_text("train: {images: JPEGImages, voc: Annotations}\nnames: [cat, dog]\n")
    samples, report = scan_split(load_data_config(tmp_path / "d.yaml"), "train", progress=False)
    assert samples[0].classes.tolist() == [1]
    np.testing.assert_allclose(samples[0].boxes[0], [0.2, 0.2, 0.2, 0.2])
    assert report.counts() == {"unknown_category": 1}


def test_synthetic_is_deterministic_and_competition_like(tmp_path, tiny_synthetic):
    from detect.data.synthetic import CLASSES, generate

    again = generate(tmp_path / "again", images=12, seed=3, val_fraction=0.2, workers=1)
    root_a, root_b = tiny_synthetic.parent, again.parent
    for rel in ("labels/train/train_00000.txt", "images/val/val_00011.jpg", "meta.csv"):
        assert (root_a / rel).read_bytes() == (root_b / rel).read_bytes()
    cfg = load_data_config(tiny_synthetic)
    assert cfg.names == CLASSES and len(CLASSES) == 12
    assert len(cfg.split("train").images) == 10 and len(cfg.split("val").images) == 2


def test_synthetic_statistics(tmp_path):
    """On 100 images: ~70% 1920x1080, one class near 75% of boxes, 15 scenes, tiny and large figures."""
    import csv

    from detect.data.synthetic import generate

    y = generate(tmp_path, images=100, seed=0, workers=2)
    meta = list(csv.DictReader(open(y.parent / "meta.csv")))
    share_1080p = np.mean([(m["width"], m["height"]) == ("1920", "1080") for m in meta])
    assert 0.6 <= share_1080p <= 0.8
    assert len({m["scene"] for m in meta}) >= 10
    rows = np.array([list(map(float, line.split())) for f in (y.parent / "labels").rglob("*.txt") for line in open(f)])
    head_share = np.mean(rows[:, 0] == 0)
    assert 0.7 <= head_share <= 0.8 and len(np.unique(rows[:, 0])) == 12
    heights_px = rows[:, 4] * 1080
    assert np.percentile(heights_px, 5) < 40 and heights_px.max() > 400
