"""make prune: network slimming (Liu et al. 2017) of YOLOv5 with real channel removal."""
