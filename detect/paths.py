"""Where the shared assets (COCO128, the official yolov5n.pt, demo photos) are found.

``$DETECT_SHARED`` if set, else ``../shared`` beside the repository. Nothing is downloaded:
code that needs these assets skips or says what is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    return Path(os.environ.get("DETECT_SHARED", REPO.parent / "shared"))
