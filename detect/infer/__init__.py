"""Inference beyond one plain forward pass, for every backend (``detect.backend``):

- ``tta``: flips and scales merged before NMS (YOLOv5's ``--augment``), a backend wrapper;
- ``slicing``: tiles of a large image, batched, mapped back to original pixels and merged
  with the full-image pass (SAHI's recipe);
- ``merge``: NMS, greedy non-maximum merging (intersection over smaller) and Weighted Boxes
  Fusion (``ensemble-boxes``) of several models or image sizes;
- ``predictor``: one image -> final boxes in original pixels, composing all of the above.
"""
