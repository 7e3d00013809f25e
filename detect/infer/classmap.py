"""Scoring a model on data whose classes it knows under other indices: classes matched by name.

The first thing a team does with a new dataset is score the COCO model on it (person boxes of an
80-class model on a person-only set). ``for_data`` matches the data's class names to the model's
(case-insensitive) and wraps the backend so that its output has the data's classes, in the data's
order: the model's other classes are dropped before NMS, so they neither suppress nor get scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from detect.errors import UsageError


def _key(name: str) -> str:
    return str(name).strip().casefold()


@dataclass(frozen=True)
class ClassMap:
    """For each data class (in the data's order), the model's class index, or None if the model lacks it."""

    model_index: tuple[int | None, ...]
    data_names: tuple[str, ...]
    model_names: tuple[str, ...]

    def lines(self) -> list[str]:
        """The mapping as printed: one line per data class, then what is dropped."""
        out = []
        for i, (name, j) in enumerate(zip(self.data_names, self.model_index)):
            target = f"model class {j} '{self.model_names[j]}'" if j is not None else "not a class of the model (AP 0)"
            out.append(f"  {i} '{name}' <- {target}")
        dropped = len(self.model_names) - sum(j is not None for j in self.model_index)
        if dropped:
            out.append(f"  the model's other {dropped} classes are dropped before NMS")
        return out


def match_classes(model_names, data_names, by_name: bool = True, weights: str = "the model",
                  data: str = "the data") -> ClassMap | None:
    """How the model's classes become the data's; None when its outputs already are the data's classes.

    Identical names (any case) need no map. Without a shared name, a model with as many classes as the
    data is read by index (a file that carries generic names); any other mismatch is a UsageError.
    ``by_name=False`` (``--no-class-map``) keeps the by-index reading and refuses a different count.
    """
    model_keys, data_keys = [_key(n) for n in model_names], [_key(n) for n in data_names]
    if model_keys == data_keys:
        return None
    count = (f"{weights} predicts {len(model_keys)} classes but {data} has {len(data_keys)}")
    if not by_name:
        if len(model_keys) == len(data_keys):
            return None
        raise UsageError(f"{count}; without --no-class-map they are matched by name")
    index = {k: i for i, k in reversed(list(enumerate(model_keys)))}  # a repeated name: its first index
    mapped = tuple(index.get(k) for k in data_keys)
    if all(j is None for j in mapped):
        if len(model_keys) == len(data_keys):
            return None
        raise UsageError(f"{count}, and no class name is shared (model: {_show(model_names)}; data: "
                         f"{_show(data_names)}): train or fine-tune on this data first")
    return ClassMap(mapped, tuple(map(str, data_names)), tuple(map(str, model_names)))


def _show(names, most: int = 5) -> str:
    names = [str(n) for n in names]
    return ", ".join(names[:most]) + (f", ... ({len(names)} in all)" if len(names) > most else "")


class ClassMappedBackend:
    """A backend whose class columns are the data's: the model's mapped columns, zeros for absent ones."""

    def __init__(self, backend, cmap: ClassMap):
        self.backend, self.cmap = backend, cmap
        self.names = list(cmap.data_names)
        self.stride, self.fixed_shape = backend.stride, backend.fixed_shape
        self._index = torch.tensor([j if j is not None else 0 for j in cmap.model_index], dtype=torch.long)
        self._present = torch.tensor([j is not None for j in cmap.model_index])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = self.backend(x)
        index, present = self._index.to(y.device), self._present.to(y.device)
        cls = y[..., 5:].index_select(-1, index) * present
        return torch.cat((y[..., :5], cls), -1)


def for_data(backend, data_names, by_name: bool = True, weights: str = "the model", data: str = "the data"):
    """``backend`` as it is, or wrapped to predict ``data_names`` (the mapping printed)."""
    cmap = match_classes(backend.names, data_names, by_name, weights, data)
    if cmap is None:
        return backend
    print(f"{weights}: classes matched by name to {data} (--no-class-map to refuse):")
    for line in cmap.lines():
        print(line)
    return ClassMappedBackend(backend, cmap)
