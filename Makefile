# Competition detection pipeline. Every target builds .venv first (make setup).
# Variables: DATA (data.yaml; default: the embedded synthetic set, generated on first use),
# WEIGHTS, IMG, BATCH, DEVICE, SHARED (the shared data folder).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared
SYNTH_DIR ?= data/synthetic
SYNTH_IMAGES ?= 200
DATA ?= $(SYNTH_DIR)/data.yaml
WEIGHTS ?= $(SHARED)/weights/yolov5n.pt
IMG ?= 640
BATCH ?= 16
DEVICE ?= cpu
SOURCE ?= $(SHARED)/images
OUT ?= runs
# training: yolov5n at 320 for 10 epochs finishes in minutes on 2 CPU cores
MODEL ?= yolov5n
TRAIN_IMG ?= 320
EPOCHS ?= 10
INIT ?= $(if $(wildcard $(SHARED)/weights/yolov5n.pt),$(SHARED)/weights/yolov5n.pt,)
HYP ?= configs/hyp/default.yaml
# RECIPE: python -m analysis's recommended.yaml (make analyze writes OUT/analyze/recommended.yaml): its
# hyperparameters, and its --img / --val-img / --anchors unless TRAIN_IMG is given here
RECIPE ?=
SET ?=
# tuning (make tune): TRIALS trainings of TUNE_EPOCHS each over the search space SPACE, one study in
# OUT/tune (run it again to resume; DEVICES=0,1 for one worker per GPU). LR_FIND=1 runs the range test.
SPACE ?= configs/tune/default.yaml
TRIALS ?= 20
TUNE_EPOCHS ?= 5
WORKERS ?= 1
DEVICES ?=
LR_FIND ?=
# competition workflow: make kfold (FOLDS), make pseudo (PRECISION; PSEUDO_ARGS="--augment")
FOLDS ?= 5
PRECISION ?= 0.9
PSEUDO_ARGS ?=
# pruning: the defaults are the settings measured to keep accuracy (docs/BENCHMARKS.md). A share of
# channels (RATIO, 10%): uniform, least-squares reconstruction, distilled recovery with
# configs/hyp/recover.yaml. A speed budget (GFLOPS=0.6, never exceeded: --gflops-at-most) switches
# to the proofs' recipe: STRATEGY=taylor (channels ranked by the task's loss change; on the synthetic set
# as l1, which kept 0.908 of its baseline at 0.575x GFLOPs, and 1.7x l1's mAP on the transferred person
# task: slimming round 13), ROUND_TO=16, 30 distilled epochs at the training schedule's rate
# (configs/hyp/rewind.yaml). Budget 25-30 epochs for a 0.6x prune to recover (docs/slimming.md).
TRAIN_IMG_ARG = $(if $(and $(RECIPE),$(filter file,$(origin TRAIN_IMG))),,--img $(TRAIN_IMG))
SPARSITY ?= 0.001
SPARSITY_MODE ?= channel
RATIO ?= 0.1
GFLOPS ?=
STRATEGY ?= $(if $(GFLOPS),taylor,)
STEPS ?= 1
STEP_EPOCHS ?= 2
FT_EPOCHS ?= $(if $(GFLOPS),30,5)
FT_HYP ?= configs/hyp/recover.yaml
FT_FINAL_HYP ?= $(if $(GFLOPS),configs/hyp/rewind.yaml,)
# widths rounded up to a multiple of ROUND_TO: 8 suits TensorRT and AVX2 CPUs; 16 suits both and ONNX
# Runtime on AVX-512 CPUs too (l1 at 16: 0.64-0.67x the latency at 0.58x GFLOPs; uniform at 8: 0.76-0.81x)
ROUND_TO ?= $(if $(GFLOPS),16,8)
# the sparse run's last.pt (its sparsest weights; best.pt is usually an early, less sparse epoch)
PRUNE_WEIGHTS ?= $(firstword $(wildcard $(OUT)/train-sparse/weights/last.pt $(OUT)/train/weights/best.pt))
# deployment; BENCH_DATA calibrates INT8 and scores each bench row (coco128 for the official weights)
TRT_IMG ?= 384 640
BENCH_DATA ?= $(if $(filter $(SHARED)/weights/yolov5n.pt,$(WEIGHTS)),$(SHARED)/datasets/coco128/data.yaml,$(DATA))
ITERS ?= 200

.PHONY: setup data check-data analyze train train-sparse prune val predict trt bench demo test lint clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

setup: $(VENV)/.installed  ## create .venv from the pinned requirements.txt

$(SYNTH_DIR)/data.yaml: | setup
	$(PY) -m detect.data.synthetic --out $(SYNTH_DIR) --images $(SYNTH_IMAGES) --seed 0

data: setup $(if $(filter $(SYNTH_DIR)/data.yaml,$(DATA)),$(SYNTH_DIR)/data.yaml)  ## generate the embedded default dataset if DATA is it

check-data: data  ## validate DATA's labels and images; report every problem
	$(PY) -m detect.data --data $(DATA) --out $(OUT)/check-data

analyze: data  ## dataset analysis of DATA at IMG: report.html, summary.json, anchors.yaml, recommended.yaml in OUT/analyze
	$(PY) -m analysis --data $(DATA) --out $(OUT)/analyze --img $(IMG)

train: data  ## train MODEL on DATA at TRAIN_IMG for EPOCHS from INIT ('' = scratch); SET="sam=true slice=true"; RECIPE=recommended.yaml
	$(PY) -m detect.train --data $(DATA) --model $(MODEL) --weights "$(INIT)" $(TRAIN_IMG_ARG) --epochs $(EPOCHS) \
	  --batch $(BATCH) --hyp $(or $(RECIPE),$(HYP)) --device $(DEVICE) --out $(OUT)/train $(if $(SET),--set $(SET))

tune: data  ## Optuna search: TRIALS trials of TUNE_EPOCHS epochs over SPACE (WORKERS CPU processes or DEVICES=0,1); OUT/tune. LR_FIND=1: the range test
	$(PY) -m detect.tune --data $(DATA) --model $(MODEL) --weights "$(INIT)" $(TRAIN_IMG_ARG) --batch $(BATCH) --hyp $(or $(RECIPE),$(HYP)) \
	  --device $(DEVICE) --out $(OUT)/tune $(if $(LR_FIND),--lr-find,--space $(SPACE) --trials $(TRIALS) --epochs $(TUNE_EPOCHS) \
	  $(if $(DEVICES),--devices $(DEVICES),--workers $(WORKERS))) $(if $(SET),--set $(SET))

kfold: data  ## FOLDS-fold training of MODEL on DATA (as make train), out-of-fold predictions, fold ensemble; OUT/kfold
	$(PY) -m detect.kfold --data $(DATA) --folds $(FOLDS) --model $(MODEL) --weights "$(INIT)" $(TRAIN_IMG_ARG) \
	  --epochs $(EPOCHS) --batch $(BATCH) --hyp $(or $(RECIPE),$(HYP)) --device $(DEVICE) --out $(OUT)/kfold $(if $(SET),--set $(SET))

pseudo: data  ## pseudo-label the images in SOURCE with WEIGHTS at IMG (thresholds for PRECISION on DATA's val); OUT/pseudo/data.yaml
	$(PY) -m detect.pseudo --weights $(WEIGHTS) --source "$(SOURCE)" --data $(DATA) --img $(IMG) --precision $(PRECISION) \
	  --device $(DEVICE) --out $(OUT)/pseudo $(PSEUDO_ARGS)

train-sparse: data  ## as train, plus L1 sparsity SPARSITY on BatchNorm gamma (for prune); OUT/train-sparse
	$(PY) -m detect.train --data $(DATA) --model $(MODEL) --weights "$(INIT)" --img $(TRAIN_IMG) --epochs $(EPOCHS) \
	  --batch $(BATCH) --hyp $(HYP) --device $(DEVICE) --out $(OUT)/train-sparse \
	  --set sparsity=$(SPARSITY) sparsity_mode=$(SPARSITY_MODE) $(SET)

prune: data  ## prune PRUNE_WEIGHTS by RATIO or GFLOPS (STRATEGY uniform|l1|taylor|gamma, STEPS, ROUND_TO), distilled recovery; OUT/prune
	@test -n "$(PRUNE_WEIGHTS)" || { echo "prune: no trained weights: run make train-sparse (or make train) first, or set PRUNE_WEIGHTS"; exit 2; }
	$(PY) -m prune --weights $(PRUNE_WEIGHTS) --data $(DATA) $(if $(GFLOPS),--gflops $(GFLOPS) --gflops-at-most,--ratio $(RATIO)) \
	  --steps $(STEPS) --step-epochs $(STEP_EPOCHS) --finetune-epochs $(FT_EPOCHS) --distill \
	  $(if $(STRATEGY),--strategy $(STRATEGY)) --round-to $(ROUND_TO) --img $(TRAIN_IMG) --batch $(BATCH) \
	  --device $(DEVICE) --hyp $(FT_HYP) $(if $(FT_FINAL_HYP),--finetune-hyp $(FT_FINAL_HYP)) --out $(OUT)/prune

val: data  ## COCO mAP of WEIGHTS on DATA (val split) and the error report in OUT/val/report; VAL_ARGS="--augment"
	$(PY) -m detect.val --weights $(WEIGHTS) --data $(DATA) --img $(IMG) --batch $(BATCH) --device $(DEVICE) \
	  --json $(OUT)/val/metrics.json --report $(OUT)/val/report $(VAL_ARGS)

predict: setup  ## detect on SOURCE with WEIGHTS; annotated images and JSON in OUT/predict; PREDICT_ARGS="--submission sub.csv"
	$(PY) -m detect.predict --weights $(WEIGHTS) --source "$(SOURCE)" --img $(IMG) --device $(DEVICE) --out $(OUT)/predict \
	  --json $(OUT)/predict/detections.json --save-images $(PREDICT_ARGS)

trt: setup  ## ONNX (FP32, FP16, INT8 calibrated on BENCH_DATA, NMS variants, Triton repo) of WEIGHTS at TRT_IMG; TensorRT FP16 + INT8 engines where CUDA+TensorRT exist
	$(PY) -m deploy.export --weights $(WEIGHTS) --img $(TRT_IMG) --nms --triton $(OUT)/deploy/triton --out $(OUT)/deploy \
	  $(if $(wildcard $(BENCH_DATA)),--int8 --calib-data $(BENCH_DATA))
	$(PY) -m deploy.trt --onnx $(OUT)/deploy/model.onnx --timing-cache $(OUT)/deploy/timing.cache --if-available
	$(if $(wildcard $(BENCH_DATA)),$(PY) -m deploy.trt --onnx $(OUT)/deploy/model.onnx --int8 --timing-cache $(OUT)/deploy/timing.cache --if-available)

bench: setup  ## latency + mAP table (PyTorch / ONNX Runtime / OpenVINO / TensorRT; FP32 FP16 INT8) of WEIGHTS at TRT_IMG vs 640x640; OUT/bench
	$(PY) -m deploy.bench --weights $(WEIGHTS) --img $(TRT_IMG) --compare-img 640 640 --iters $(ITERS) \
	  $(if $(wildcard $(BENCH_DATA)),--calib-data $(BENCH_DATA) --data $(BENCH_DATA)) \
	  $(if $(wildcard $(OUT)/deploy/*.engine),--engine $(wildcard $(OUT)/deploy/*.engine)) --json $(OUT)/bench/bench.json

# The demo's recipe (docs/training.md, "What make demo shows"): sliced training at 320 on 640-px windows, validated
# and used at 960 on the whole 1920-px images (the same scale); 30 epochs at batch 8 = 600 optimiser
# steps; the pretrained head's box and objectness rows kept. Then a gentle uniform prune (10% of every
# layer, rounded to multiples of 8) with 4 distilled recovery epochs: measured -0.002 mAP50-95.
DEMO_EPOCHS ?= 30
DEMO_TRAIN := --img 320 --val-img 960 --batch 8 --device cpu --cache ram --val-interval 10 --set slice=true nominal_batch=8
demo: data  ## the whole pipeline on the embedded dataset (+ the shared photos if present), < 15 min on 2 cores
	$(PY) -m analysis --data $(SYNTH_DIR)/data.yaml --out $(OUT)/demo/analyze --img 640
	$(PY) -m detect.train --data $(SYNTH_DIR)/data.yaml --model yolov5n --weights "$(INIT)" --epochs $(DEMO_EPOCHS) \
	  $(DEMO_TRAIN) --out $(OUT)/demo/train
	$(PY) -m detect.val --weights $(OUT)/demo/train/weights/best.pt --data $(SYNTH_DIR)/data.yaml --img 960 --device cpu \
	  --json $(OUT)/demo/val-synthetic.json --report $(OUT)/demo/val-report
	$(PY) -m detect.predict --weights $(OUT)/demo/train/weights/best.pt --source $(SYNTH_DIR)/images/val --img 960 \
	  --device cpu --out $(OUT)/demo/predict --save-images
	$(PY) -m prune --weights $(OUT)/demo/train/weights/best.pt --data $(SYNTH_DIR)/data.yaml --strategy uniform \
	  --ratio 0.1 --finetune-epochs 4 --distill --img 320 --val-img 960 --batch 8 --hyp $(FT_HYP) \
	  --set slice=true nominal_batch=8 --latency-iters 20 --out $(OUT)/demo/prune
	$(PY) -m deploy.export --weights $(OUT)/demo/train/weights/best.pt --img 384 640 --out $(OUT)/demo/deploy
	$(PY) -m deploy.trt --onnx $(OUT)/demo/deploy/model.onnx --if-available
	$(PY) -m deploy.bench --weights $(OUT)/demo/train/weights/best.pt $(OUT)/demo/prune/pruned.pt --img 384 640 \
	  --iters 30 --warmup 5 --json $(OUT)/demo/bench.json
	@if [ -f "$(SHARED)/weights/yolov5n.pt" ]; then \
	  $(PY) -m detect.predict --weights $(SHARED)/weights/yolov5n.pt --source "$(SHARED)/images" --img 640 --device cpu --out $(OUT)/demo/predict-photos --save-images && \
	  $(PY) -m detect.val --weights $(SHARED)/weights/yolov5n.pt --data $(SHARED)/datasets/coco128/data.yaml --img 640 --device cpu --json $(OUT)/demo/val-coco128.json; \
	else echo "demo: $(SHARED)/weights/yolov5n.pt not found; skipping the pretrained-weights steps (see docs/data.md)"; fi
	@$(PY) -c "import json; m = json.load(open('$(OUT)/demo/val-synthetic.json')); \
	  print(f\"demo model on the synthetic val at 960: mAP50 {m['map50']:.3f} (all classes), {m['per_class'][0]['map50']:.3f} ({m['per_class'][0]['class']}, the head class); mAP50-95 {m['map50_95']:.3f}\")"

test: setup  ## ruff, then the test suite
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: setup  ## ruff check (the code is wrapped by hand at 120 columns; ruff format is not applied)
	$(PY) -m ruff check .

clean:  ## remove runs/ and the generated dataset (keeps .venv)
	rm -rf $(OUT) $(SYNTH_DIR)
