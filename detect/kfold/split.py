"""K folds of the training images: stratified by class presence and scene, groups kept whole.

Iterative stratification (Sechidis et al. 2011, ``iterative-stratification``'s
``MultilabelStratifiedKFold``): every class, rare ones first, is spread evenly over the folds, as a
plain random split of a set where one class is 76% of the boxes would not. A group (``--group-by``: a
video, a camera) is stratified as one unit — the union of its images' classes — so near-identical
frames never sit on both sides of a fold.
"""

from __future__ import annotations

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

from detect.errors import UsageError


def presence(classes: list[np.ndarray], nc: int, scenes: list | None = None) -> np.ndarray:
    """(images, nc [+ scenes]) 0/1: which classes (and which scene) each image holds."""
    columns = sorted({s for s in scenes if s is not None}, key=str) if scenes else []
    out = np.zeros((len(classes), nc + len(columns)), np.int64)
    for i, c in enumerate(classes):
        out[i, np.unique(c).astype(int)] = 1
        if scenes and scenes[i] is not None:
            out[i, nc + columns.index(scenes[i])] = 1
    return out


def assign_folds(labels: np.ndarray, k: int, seed: int = 0, groups: list | None = None) -> np.ndarray:
    """The fold (0..k-1) of each image; images of one group share a fold."""
    n = len(labels)
    keys = np.array([str(g) for g in groups]) if groups is not None else np.arange(n).astype(str)
    unique, inverse = np.unique(keys, return_inverse=True)
    if len(unique) < k:
        raise UsageError(f"--folds {k}: only {len(unique)} {'groups' if groups is not None else 'images'} to split")
    per_group = np.zeros((len(unique), labels.shape[1]), np.int64)
    np.maximum.at(per_group, inverse, labels)
    splitter = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    fold_of_group = np.empty(len(unique), np.int64)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(unique)), per_group)):
        fold_of_group[held_out] = fold
    return fold_of_group[inverse]
