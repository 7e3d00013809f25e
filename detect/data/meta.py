"""Per-image attributes (scene, camera, time of day...) from a CSV whose first column names the
image: a path relative to the dataset root, or a bare file name. The analysis stage and the
validation report read it the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from detect.errors import DataError


def read_meta(meta: Path, paths: list, root: Path) -> pd.DataFrame:
    """The attribute columns for ``paths`` (one row each, in order; None where the CSV has no row).
    ``attrs["unmatched"]`` counts the images without one, ``attrs["columns"]`` names the attributes."""
    meta = Path(meta)
    if not meta.is_file():
        raise DataError(f"{meta}: no such metadata CSV")
    try:
        table = pd.read_csv(meta)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(f"{meta}: not a readable CSV ({str(e).splitlines()[0]})") from None
    if table.empty or table.shape[1] < 2:
        raise DataError(f"{meta}: expected a header row and at least two columns (image, attribute...)")
    key = table.columns[0]
    names = table[key].astype(str)
    by_rel = dict(zip(names, range(len(table))))
    by_base = dict(zip(names.map(lambda s: Path(s).name), range(len(table))))
    rows = []
    for p in paths:
        path = Path(p)
        try:
            rel = str(path.relative_to(root))
        except ValueError:
            rel = path.name
        rows.append(by_rel.get(rel, by_base.get(path.name, -1)))
    rows = np.array(rows, int)
    attrs = table.drop(columns=[key])
    out = attrs.iloc[np.clip(rows, 0, None)].reset_index(drop=True).astype(object)
    out[rows < 0] = None
    out.attrs["unmatched"] = int((rows < 0).sum())
    out.attrs["columns"] = list(attrs.columns)
    return out
