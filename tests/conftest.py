"""Shared fixtures: the ../shared folder (or $DETECT_SHARED), a tiny synthetic dataset, an isolated cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from detect.paths import shared_dir

REPO = Path(__file__).resolve().parents[1]
SHARED = shared_dir()


def shared_path(rel: str) -> Path:
    """A file under the shared folder, or skip the test saying exactly what is missing."""
    p = SHARED / rel
    if not p.exists():
        pytest.skip(f"needs {p} (the shared data folder; set DETECT_SHARED to point elsewhere)")
    return p


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    os.environ["DETECT_CACHE"] = str(tmp_path_factory.mktemp("label-cache"))


@pytest.fixture(autouse=True)
def _torch_threads_unchanged():
    """torch's thread count belongs to the process: a test that changes it changes every test after it. An
    in-process val of an OpenVINO model once left the rest of the suite training on one thread."""
    before = torch.get_num_threads()
    yield
    after = torch.get_num_threads()
    if after != before:
        torch.set_num_threads(before)
        pytest.fail(f"the test left torch {after} threads instead of {before}")


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> Path:
    """12 synthetic images (10 train, 2 val) and their data.yaml."""
    from detect.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("synthetic"), images=12, seed=3, val_fraction=0.2, workers=1)


@pytest.fixture(scope="session")
def yolov5n_pt() -> Path:
    return shared_path("weights/yolov5n.pt")


@pytest.fixture(scope="session")
def coco128() -> Path:
    return shared_path("datasets/coco128/data.yaml")


@pytest.fixture(scope="session")
def persons(tmp_path_factory) -> Path:
    """8 coco128 photos with people, person boxes only, as train and val: yolov5n.pt scores well on them."""
    root = shared_path("datasets/coco128")
    out = tmp_path_factory.mktemp("persons")
    (out / "images").mkdir()
    (out / "labels").mkdir()
    for label in sorted((root / "labels/train2017").glob("*.txt"))[:40]:
        rows = [x for x in label.read_text().splitlines() if x.startswith("0 ")]
        if 1 <= len(rows) <= 4 and len(list((out / "labels").iterdir())) < 8:
            (out / "labels" / label.name).write_text("\n".join(rows) + "\n")
            (out / "images" / f"{label.stem}.jpg").symlink_to(root / "images/train2017" / f"{label.stem}.jpg")
    (out / "data.yaml").write_text("path: .\ntrain: images\nval: images\nnames: [person]\n")
    return out / "data.yaml"
