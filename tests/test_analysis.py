import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from analysis.__main__ import analyse
from analysis.anchors import anchor_metrics, fit_anchors
from tests.clirun import run_cli

REPO = Path(__file__).resolve().parents[1]


def _img(path: Path, h: int, w: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (90, 90, 90)).save(path)


@pytest.fixture()
def hand_dataset(tmp_path) -> Path:
    """train: A (100x200 hxw, 3 boxes), B (200x100, 2 boxes), C (100x200, no label file), E (corrupt);
    val: D (100x200, 1 box). Plus one label file without an image."""
    r = tmp_path
    _img(r / "images/train/A.png", 100, 200)
    _img(r / "images/train/B.png", 200, 100)
    _img(r / "images/train/C.png", 100, 200)
    (r / "images/train/E.png").write_bytes(b"not an image")
    _img(r / "images/val/D.png", 100, 200)
    (r / "labels/train").mkdir(parents=True)
    (r / "labels/val").mkdir(parents=True)
    # A: two class-0 boxes of 40x40 px overlapping by 20x40 (IoU 1/3), one class-1 box of 20x20 px.
    (r / "labels/train/A.txt").write_text("0 0.25 0.5 0.2 0.4\n0 0.35 0.5 0.2 0.4\n1 0.8 0.5 0.1 0.2\n")
    # B: two class-1 boxes, 50x100 px and 50x90 px, same centre: IoU 0.9.
    (r / "labels/train/B.txt").write_text("1 0.5 0.5 0.5 0.5\n1 0.5 0.5 0.5 0.45\n")
    (r / "labels/train/orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (r / "labels/val/D.txt").write_text("2 0.5 0.5 0.5 0.5\n")  # 100x50 px
    (r / "meta.csv").write_text(
        "image,scene\nimages/train/A.png,street\nimages/train/B.png,park\n"
        "images/train/C.png,street\nimages/val/D.png,park\n"
    )
    (r / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [a, b, c]\n")
    return r / "data.yaml"


def test_statistics_by_hand(hand_dataset, tmp_path):
    s = analyse(hand_dataset, tmp_path / "out", img=64, progress=False)
    assert s["splits"]["train"] == {
        "images": 3,
        "instances": 5,
        "background_images": 1,
        "per_class": {"a": 2, "b": 3, "c": 0},
    }
    assert s["splits"]["val"]["instances"] == 1 and s["splits"]["val"]["per_class"]["c"] == 1
    assert s["excluded_images"] == {"train": 1, "val": 0}
    assert s["label_issues"]["train"] == {"corrupt_image": 1, "missing_label": 1}
    assert [Path(p).name for p in s["orphan_labels"]["train"]] == ["orphan.txt"]
    c = s["classes"]  # a 2, b 3, c 1 boxes
    assert (
        c["head_class"] == "b" and c["head_share"] == pytest.approx(0.5) and c["imbalance_ratio"] == pytest.approx(3.0)
    )
    d = s["density"]  # boxes per image: A 3, B 2, C 0, D 1
    assert (d["mean"], d["median"], d["max"]) == (1.5, 1.5, 3) and Path(d["densest"][0]["path"]).name == "A.png"
    sizes = s["image_sizes"]
    assert sizes["most_common"] == {"width": 200, "height": 100, "share": 0.75}
    assert sizes["orientation"]["landscape"] == 0.75 and sizes["orientation"]["portrait"] == 0.25
    b = s["box_sizes"]  # native areas: 1600, 1600, 400, 5000, 4500, 5000 px; at img 64 all scale by 0.32
    assert b["coco_native"] == pytest.approx({"small": 1 / 6, "medium": 5 / 6, "large": 0.0})
    assert b["coco_at_input"] == pytest.approx({"small": 1.0, "medium": 0.0, "large": 0.0})
    o = s["occlusion"]  # pairs IoU>0: A 1, B 1, C 0, D 0; IoU>0.5: only B
    assert o["pairs_iou_gt_0_per_image"] == {"mean": 0.5, "max": 1}
    assert o["pairs_iou_gt_0.5_per_image"] == {"mean": 0.25, "max": 1}
    assert o["share_boxes_overlapped"] == pytest.approx(4 / 6)
    assert o["share_boxes_same_class_iou_gt_0.5"] == pytest.approx(2 / 6)  # B's pair; A's pair is at IoU 1/3
    sc = s["scenes"]  # street: A (3 boxes) + C (0); park: B (2) + D (1)
    assert sc["images"] == {"street": 2, "park": 2} and sc["boxes"] == {"street": 3, "park": 3}
    assert sc["class_by_scene"] == {"park": {"b": 2, "c": 1}, "street": {"a": 2, "b": 1}}
    shift = s["shift"]  # train shares a .4 b .6 c 0; val c 1.0
    assert shift["class_share_difference"] == pytest.approx({"a": -0.4, "b": -0.6, "c": 1.0})


def test_summary_schema_and_reports(hand_dataset, tmp_path):
    out = tmp_path / "out"
    analyse(hand_dataset, out, img=64, progress=False)
    s = json.loads((out / "summary.json").read_text())
    for split in ("train", "val"):
        assert {"images", "instances", "per_class"} <= s["splits"][split].keys()
    assert {"image_sizes", "box_sizes", "anchors", "recommendations"} <= s.keys()
    assert all(set(r) == {"setting", "value", "because"} and r["because"] for r in s["recommendations"])
    assert (out / "images.parquet").is_file() and (out / "boxes.parquet").is_file()

    class Collect(HTMLParser):
        imgs, tags = [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            if tag == "img":
                self.imgs.append(dict(attrs)["src"])

    parser = Collect()
    parser.feed((out / "report.html").read_text())
    assert parser.tags.count("h2") >= 8 and parser.imgs
    assert all(src.startswith("data:image/png;base64,") for src in parser.imgs)  # self-contained
    md = (out / "report.md").read_text()
    assert md.index("Recommendations") < md.index("Splits")  # recommendations first
    refs = [line[line.index("(") + 1 : -1] for line in md.splitlines() if line.startswith("![")]
    assert refs and all((out / r).is_file() for r in refs)
    for p in s["plots"].values():
        for f in p if isinstance(p, list) else [p]:
            assert (out / f).stat().st_size > 1000


def test_anchor_metrics_by_hand():
    anchors = np.array([[10.0, 10], [40, 40], [100, 100]])
    m = anchor_metrics(np.array([[10.0, 10]]), anchors)  # ratios 1, 1/4, 1/10: only the first is > 1/4
    assert m == {"bpr": 1.0, "aat": 1.0}
    m = anchor_metrics(np.array([[10.0, 10], [500, 10]]), anchors)  # 500x10 matches nothing within 4x
    assert m["bpr"] == 0.5


def test_fitted_anchors_cover_clustered_boxes():
    rng = np.random.default_rng(0)
    centres = np.array([[8, 20], [30, 30], [60, 150], [200, 60], [300, 300]], float)
    wh = np.concatenate([c * rng.uniform(0.8, 1.25, (400, 2)) for c in centres])
    fitted = fit_anchors(wh, n=9, generations=200)
    assert fitted.shape == (9, 2) and (np.diff(fitted.prod(1)) >= 0).all()
    assert anchor_metrics(wh, fitted)["bpr"] == 1.0


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "analysis", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def test_cli_on_synthetic_recommends_384x640(tmp_path):
    from detect.data.synthetic import generate

    data = generate(tmp_path / "syn", images=40, seed=1, workers=1)
    r = _run("--data", str(data), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    rec = {x["setting"]: x for x in s["recommendations"]}
    assert rec["input_shape"]["value"] == "384x640" and "1920x1080" in rec["input_shape"]["because"]
    assert s["classes"]["head_share"] > 0.6 and "focal_loss" in rec
    assert "scenes" in s and len(s["scenes"]["images"]) >= 5
    assert 'input_shape: "384x640"' in r.stdout and (tmp_path / "out" / "anchors.yaml").is_file()


def test_coco128_counts_match_label_files(coco128, tmp_path):
    s = analyse(coco128, tmp_path / "out", progress=False)
    root = coco128.parent
    for split, folder in (("train", "train2017"), ("val", "val2017")):
        counts = np.zeros(80, int)
        images = sorted((root / "images" / folder).iterdir())
        for img in images:
            f = root / "labels" / folder / f"{img.stem}.txt"
            for line in f.read_text().splitlines() if f.exists() else []:
                if line.strip():
                    counts[int(line.split()[0])] += 1
        names = list(s["splits"][split]["per_class"])
        assert [s["splits"][split]["per_class"][n] for n in names] == counts.tolist()
        assert s["splits"][split]["images"] == len(images)
        stems = {p.stem for p in images}
        orphans = sorted(p.name for p in (root / "labels" / folder).glob("*.txt") if p.stem not in stems)
        assert [Path(p).name for p in s["orphan_labels"][split]] == orphans


@pytest.mark.parametrize("case", ["missing_folder", "empty"])
def test_bad_input_exit_2(tmp_path, case):
    (tmp_path / "images").mkdir()
    if case == "missing_folder":
        (tmp_path / "d.yaml").write_text("train: nowhere\nnames: [a]\n")
        expect = "is not a folder"
    else:
        (tmp_path / "images" / "x.png").write_bytes(b"broken")
        (tmp_path / "d.yaml").write_text("train: images\nnames: [a]\n")
        expect = "dataset is empty"
    r = run_cli("analysis", "--data", tmp_path / "d.yaml", "--out", tmp_path / "out")  # in this process
    assert r.returncode == 2 and r.stderr.startswith("error: ") and expect in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
