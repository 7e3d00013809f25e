"""Run under torchrun (gloo): each rank evaluates its share of a split; rank 0 writes the merged metrics.

    python -m torch.distributed.run --nproc_per_node 2 tests/scripts/ddp_eval.py WEIGHTS DATA IMG OUT.json
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from detect.backend import TorchBackend  # noqa: E402
from detect.data.config import load_data_config  # noqa: E402
from detect.data.labels import scan_split  # noqa: E402
from detect.evaluate import EvalConfig, run_eval  # noqa: E402
from detect.train.distributed import init_distributed  # noqa: E402

weights, data, img, out = sys.argv[1:]
rank, _, world = init_distributed("cpu")
cfg = load_data_config(data)
samples, _ = scan_split(cfg, "val", progress=False)
backend = TorchBackend(weights, torch.device("cpu"))
metrics, detections = run_eval(backend, samples, cfg.names,
                               EvalConfig(int(img), workers=0, progress=False, shard=(rank, world)))
if rank == 0:
    Path(out).write_text(json.dumps({"map50_95": metrics["map50_95"], "map50": metrics["map50"],
                                     "detections": len(detections), "world": world}))
else:
    assert metrics == {} and detections == []
dist.destroy_process_group()
