"""Reading image files safely: decided by decoding, bounded in size, any file name.

- An image is usable when it decodes. Bytes after a JPEG's end-of-image marker (phone
  trailers, zero padding) and a suffix that does not match the format (a PNG named .jpg) are
  notes, not exclusions; a file that does not decode is excluded, naming the reason.
- The size an image header declares is checked before any pixel is allocated: over
  ``max_megapixels()`` (default 250, ``$DETECT_MAX_MEGAPIXELS``) it is refused, naming the size.
  Pillow's own bomb limit is replaced by this one.
- Files are read through Python (``open`` then ``cv2.imdecode``), so names with undecodable
  bytes or odd characters never reach OpenCV's path handling; ``safe_name`` prints them.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

Image.MAX_IMAGE_PIXELS = None  # our limit (max_megapixels) is checked from the header instead
EXIF_ORIENTATION = 0x0112
_SUFFIX_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
                   ".webp": "WEBP"}


class ImageError(OSError):
    """An image file that cannot be used; the message names the file and why."""

    def __init__(self, kind: str, path, detail: str):
        super().__init__(f"{safe_name(path)}: {detail}")
        self.kind, self.detail = kind, detail


def safe_name(path) -> str:
    """``path`` printable on any terminal: undecodable bytes of the name shown as \\xNN escapes."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def max_megapixels() -> float:
    try:
        return float(os.environ.get("DETECT_MAX_MEGAPIXELS", 250))
    except ValueError:
        return 250.0


def _read(path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ImageError("unreadable", path, f"cannot be opened ({e.strerror or e})") from None


def _open_checked(data: bytes, path) -> Image.Image:
    """A Pillow image with its header parsed and its declared size within the limit (nothing decoded yet)."""
    try:
        im = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError("corrupt_image", path, f"cannot be read as an image ({e})") from None
    w, h = im.size
    if w * h > max_megapixels() * 1e6:
        raise ImageError("too_large", path, f"declares {w}x{h} pixels ({w * h / 1e6:.0f} MP), over the "
                         f"{max_megapixels():g} MP limit (raise it with DETECT_MAX_MEGAPIXELS if it is real)")
    return im


def inspect_image(path) -> tuple[tuple[int, int], list[tuple[str, str]]]:
    """((h, w) as displayed, [(note kind, detail)]) for a usable image; ImageError otherwise.

    Decodes the whole image (JPEGs at 1/8 scale: every byte is still read) so a truncated file
    is caught here, once, rather than in the middle of training.
    """
    data = _read(path)
    im = _open_checked(data, path)
    notes = []
    w, h = im.size
    fmt, mode = im.format, im.mode
    orientation = im.getexif().get(EXIF_ORIENTATION, 1)
    try:
        if fmt == "JPEG":
            im.draft("RGB", (max(1, w // 8), max(1, h // 8)))
        im.load()
    except (OSError, SyntaxError, ValueError, MemoryError) as e:
        raise ImageError("corrupt_image", path, f"does not decode ({e})") from None
    expected = _SUFFIX_FORMATS.get(Path(path).suffix.lower())
    if expected and fmt and fmt != expected and not (expected == "TIFF" and fmt == "MPO"):
        notes.append(("wrong_suffix", f"a {fmt} file named {Path(safe_name(path)).suffix}"))
    if fmt in ("JPEG", "MPO"):
        end = data.rfind(b"\xff\xd9")
        if 0 <= end < len(data) - 2:
            notes.append(("trailing_data", f"{len(data) - end - 2} bytes after the end-of-image marker"))
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    if orientation not in (1, None):
        notes.append(("exif_rotated", f"EXIF orientation {orientation}"))
    if mode not in ("RGB", "YCbCr"):
        notes.append(("converted_image", f"pixel mode {mode}"))
    return (h, w), notes


def decode_image(path) -> np.ndarray:
    """BGR uint8 HxWx3, EXIF orientation applied, grey/RGBA/16-bit converted; ImageError if unusable."""
    data = _read(path)
    _open_checked(data, path)  # the size limit, before OpenCV allocates
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError("corrupt_image", path, "cannot be decoded as an image; re-export or remove it")
    return img
