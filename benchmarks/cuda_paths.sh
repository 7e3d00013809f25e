#!/bin/bash
# The CUDA paths in one run on a GPU machine (docs/notes/2026-12-04-test-suite.md): val FP32 vs --half, val --augment,
# AMP fp16/bf16 fine-tuning, torchrun + NCCL (one rank per GPU), predict --half with TTA, slices and a WBF ensemble,
# and deploy.bench's CUDA rows at batch 1 and 8. Results go to $OUT (default runs/cuda).
#
# For a lent machine that installs nothing (its image has torch, torchvision, onnx, onnxruntime, opencv): fill one
# folder here and carry it (the device tool's `carry`), e.g. gpuwheels/ listed in .git/info/exclude:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
#     --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d gpuwheels albumentations==2.0.8 \
#     albucore==0.0.24 pydantic pydantic-core annotated-types typing-inspection typing_extensions stringzilla simsimd \
#     faster-coco-eval==1.8.0 pycocotools==2.0.11 onnxslim==0.1.98 ensemble-boxes==1.0.9
#   cp -r ../shared/datasets/coco128 ../shared/weights/yolov5n.pt ../shared/images gpuwheels/
# then: bash benchmarks/cuda_paths.sh gpuwheels
G=${1:-gpuwheels}; OUT=${OUT:-runs/cuda}; mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1
W=$G/yolov5n.pt; D=$G/coco128/data.yaml; PY=${PY:-python3}
step() { echo; echo "=== $1 ($(date +%T), ${SECONDS} s)"; }
step env
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
ls "$G"/*.whl >/dev/null 2>&1 && $PY -m pip install --quiet --no-index --no-deps "$G"/*.whl
$PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, torch.cuda.get_device_name(0))"
for half in "" --half; do
  for tta in "" --augment; do
    step "val $half $tta"
    $PY -m detect.val --weights $W --data $D --img 640 --batch 32 --device cuda $half $tta \
      --json "$OUT/val${half:+_half}${tta:+_tta}.json" | tail -1
  done
done
for amp in fp16 bf16; do
  step "fine-tune, AMP $amp"
  $PY -m detect.train --data $D --weights $W --img 320 --epochs 1 --batch 16 --device cuda --amp $amp --workers 4 \
    --out "$OUT/ft_$amp" 2>&1 | grep -E "^(model|epoch|done)"
done
step "torchrun + NCCL, one rank per GPU"
$PY -m torch.distributed.run --nproc_per_node "$($PY -c 'import torch; print(torch.cuda.device_count())')" \
  --master_port 29533 -m detect.train --data $D --weights $W --img 320 --epochs 1 --batch 16 --device cuda \
  --workers 4 --out "$OUT/ft_ddp" 2>&1 | grep -E "^(model|epoch|done)"
cp $W "$OUT/second.pt"
step "predict --half, TTA, slices, two-model WBF"
$PY -m detect.predict --weights $W "$OUT/second.pt" --source $G/images --device cuda --half --augment \
  --slice 640x640 --img 640 --json "$OUT/predict.json" --out "$OUT/predict" | tail -2
for batch in 1 8; do
  step "bench, batch $batch"
  $PY -m deploy.bench --weights $W --img 384 640 --batch $batch --iters 50 --warmup 10 --rounds 1 \
    --json "$OUT/bench_b$batch.json" | tail -8
done
step done
