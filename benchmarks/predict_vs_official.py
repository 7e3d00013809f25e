"""Record official detect.py's boxes on the two demo photos and compare ours with them.

    python benchmarks/predict_vs_official.py --official-python /tmp/offvenv/bin/python [--write-fixture]

The official side is YOLOv5 7.0.14's detect pipeline (LoadImages with its letterbox, NMS at
conf 0.25 / IoU 0.45, scale_boxes) run in its own venv (docs/BENCHMARKS.md). With
``--write-fixture`` the boxes go to tests/fixtures/official_detect_yolov5n.json, which
tests/test_submission.py checks ``detect.predict`` against. Prints the largest coordinate
and score differences per photo.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from detect.paths import shared_dir  # noqa: E402

FIXTURE = REPO / "tests/fixtures/official_detect_yolov5n.json"
OFFICIAL = """
import json, sys
import torch
from yolov5.models.common import DetectMultiBackend
from yolov5.utils.dataloaders import LoadImages
from yolov5.utils.general import non_max_suppression, scale_boxes
model = DetectMultiBackend(sys.argv[1], device=torch.device("cpu"))
out = {}
for path, im, im0, _, _ in LoadImages(sys.argv[2], img_size=640, stride=model.stride, auto=model.pt):
    x = torch.from_numpy(im).float()[None] / 255
    det = non_max_suppression(model(x), 0.25, 0.45, None, False, max_det=1000)[0]
    det[:, :4] = scale_boxes(x.shape[2:], det[:, :4], im0.shape)
    out[path.split("/")[-1]] = {"network_shape": list(x.shape[2:]), "boxes": [[round(v, 3) for v in b] for b in det.tolist()]}
print("RESULT" + json.dumps(out))
"""


def main() -> int:
    shared = shared_dir()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--official-python", required=True)
    p.add_argument("--weights", default=str(shared / "weights/yolov5n.pt"))
    p.add_argument("--images", default=str(shared / "images"))
    p.add_argument("--write-fixture", action="store_true")
    args = p.parse_args()
    script = Path(tempfile.mkdtemp()) / "official_detect.py"
    script.write_text(OFFICIAL)
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "YOLOv5_AUTOINSTALL": "False"}
    log = subprocess.run([args.official_python, str(script), args.weights, args.images], capture_output=True, text=True,
                         env=env, check=True).stdout
    official = json.loads(log.split("RESULT", 1)[1])
    if args.write_fixture:
        FIXTURE.write_text(json.dumps({"source": "official YOLOv5 7.0.14 detect.py pipeline (LoadImages, letterbox auto, "
                                       "NMS conf 0.25 iou 0.45, scale_boxes), yolov5n.pt, CPU FP32; recorded by "
                                       "benchmarks/predict_vs_official.py", "images": official}, indent=1))
    import torch

    from detect.backend import TorchBackend
    from detect.data.dataset import load_image
    from detect.predict import detect_image

    backend = TorchBackend(args.weights, torch.device("cpu"))
    for name, ref in official.items():
        det, _ = detect_image(backend, load_image(Path(args.images) / name), 640, 0.25, 0.45)
        ref_t = torch.tensor(ref["boxes"])
        box = max(float((det[:, :4] - r[:4]).abs().max(1).values.min()) for r in ref_t)
        score = max(float((det[:, 4] - r[4]).abs()[(det[:, :4] - r[:4]).abs().max(1).values.argmin()]) for r in ref_t)
        print(f"{name}: {len(det)} boxes (official {len(ref_t)}); largest coordinate difference {box:.4f} px, "
              f"score difference {score:.5f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
