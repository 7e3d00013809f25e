"""Pseudo-labels from unlabelled images: ``python -m detect.pseudo``, or ``detect.pseudo.label(PseudoConfig(...))``.

  select.py  each class's keep / drop score thresholds, chosen on labelled images for a precision
  label.py   PseudoConfig, label(): predict, threshold, write OUT/images, labels, data.yaml, pseudo.json
"""

from detect.pseudo.label import PseudoConfig, label

__all__ = ["PseudoConfig", "label"]
