import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from detect.errors import WeightsError
from detect.infer.metadata import read_metadata
from tests.clirun import run_cli

REPO = Path(__file__).resolve().parents[1]


def _run(*args):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, yolov5n_pt):
    out = tmp_path_factory.mktemp("export")
    r = _run(
        "-m",
        "deploy.export",
        "--weights",
        str(yolov5n_pt),
        "--img",
        "384",
        "640",
        "--nms",
        "--triton",
        str(out / "triton"),
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    return out


def test_export_parity_fp32_and_fp16(exported):
    report = json.loads((exported / "export.json").read_text())
    assert report["fp32"]["ok"] and report["fp32"]["max_relative"] <= 1e-4
    assert report["fp16"]["ok"] and report["fp16"]["max_relative"] <= 1e-2
    assert len(report["images"]) >= 1  # checked on real photos, not zeros
    for name in ("model.onnx", "model_fp16.onnx"):
        m = onnx.load(str(exported / name))
        assert [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 384, 640]
        assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # FP32 I/O for both
        assert [d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim] == [1, 15120, 85]
    fp16 = onnx.load(str(exported / "model_fp16.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in fp16.graph.initializer)


def test_onnx_metadata(exported):
    meta = read_metadata(exported / "model.onnx")
    assert meta["names"][:2] == ["person", "bicycle"] and meta["stride"] == 32
    assert meta["input_shape"] == [1, 3, 384, 640] and meta["letterbox"]["pad_value"] == 114
    assert meta["precision"] == "fp32" and read_metadata(exported / "model_fp16.onnx")["precision"] == "fp16"


def test_nms_graph_matches_our_nms_on_demo_photos(exported):
    import onnxruntime as ort

    from detect.backend import TorchBackend
    from detect.boxes import non_max_suppression, prepare_image
    from detect.data.dataset import load_image, to_tensor
    from tests.conftest import shared_path

    torch_backend = TorchBackend(shared_path("weights/yolov5n.pt"), torch.device("cpu"))
    sess = ort.InferenceSession(str(exported / "model_nms.onnx"), providers=["CPUExecutionProvider"])
    for photo in ("bus.jpg", "zidane.jpg"):
        net, _ = prepare_image(load_image(shared_path(f"images/{photo}")), 640, 32, shape=(384, 640))
        x = to_tensor(net)[None].float() / 255
        ours = non_max_suppression(torch_backend(x), 0.25, 0.45, multi_label=True)[0]
        graph = torch.from_numpy(sess.run(None, {"images": x.numpy()})[0])
        assert len(graph) == len(ours) > 0, photo
        key = lambda t: sorted(map(tuple, np.round(t.numpy(), 1).tolist()))  # noqa: E731
        a, b = key(graph[:, [5, 6, 1, 2, 3, 4]]), key(ours[:, [4, 5, 0, 1, 2, 3]])
        np.testing.assert_allclose(np.array(a), np.array(b), atol=0.25)


def test_val_and_predict_accept_onnx(exported, tmp_path):
    from tests.conftest import shared_path

    out = tmp_path / "pred.json"
    r = run_cli(  # in this process: predict's start-up is tested end to end in test_val_predict.py
        "detect.predict",
        "--weights",
        str(exported / "model.onnx"),
        "--source",
        str(shared_path("images")),
        "--out",
        str(tmp_path),
        "--json",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    dets = json.loads(out.read_text())
    assert sum(d["file_name"] == "zidane.jpg" and d["category_id"] == 0 for d in dets) >= 2
    r = run_cli("detect.val", "--weights", exported / "model_nms.onnx", "--data", shared_path("datasets/coco128/data.yaml"))
    assert r.returncode == 2 and "has NMS inside" in r.stderr


def test_triton_repository(exported):
    cfg = (exported / "triton" / "detector" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in cfg and "max_batch_size: 0" in cfg
    assert "dims: [1, 3, 384, 640]" in cfg and "dims: [1, 15120, 85]" in cfg
    assert (exported / "triton" / "detector" / "1" / "model.onnx").is_file()


def test_efficient_nms_graph_for_tensorrt(exported):
    m = onnx.load(str(exported / "model_trt_nms.onnx"))
    node = next(n for n in m.graph.node if n.op_type == "EfficientNMS_TRT")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["box_coding"] == 1 and attrs["score_activation"] == 0 and attrs["background_class"] == -1
    assert [o.name for o in m.graph.output] == ["num_dets", "det_boxes", "det_scores", "det_classes"]


def test_foreign_onnx_gets_a_clear_message(tmp_path):
    foreign = tmp_path / "foreign.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 4, 1), (torch.zeros(1, 3, 8, 8),), str(foreign), dynamo=False)
    with pytest.raises(WeightsError, match="neither deploy.export's .* nor the official YOLOv5 exporter's"):
        read_metadata(foreign)


def test_trt_without_tensorrt_says_what_is_missing(exported):
    from deploy.trt import missing_requirements

    if not missing_requirements():
        pytest.skip("CUDA and TensorRT are present here; the missing-requirements path cannot be exercised")
    r = run_cli("deploy.trt", "--onnx", exported / "model.onnx")
    lines = [s for s in r.stderr.splitlines() if s.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "cannot build a TensorRT engine here: missing" in lines[0]
    assert "model.onnx" in lines[0] and "model_fp16.onnx" in lines[0]


def test_engine_build_and_run(exported, tmp_path):
    from deploy.trt import missing_requirements

    missing = missing_requirements()
    if missing:
        pytest.skip(f"TensorRT engine test needs {' and '.join(missing)}")
    from deploy.trt import build
    from detect.infer.tensorrt import TrtBackend

    engine = tmp_path / "model.engine"
    build(exported / "model.onnx", engine)
    backend = TrtBackend(engine, torch.device("cuda"))
    out = backend(torch.rand(1, 3, 384, 640))
    assert out.shape == (1, 15120, 85)


def test_bench_json_schema(tmp_path, yolov5n_pt, coco128):
    """Every row timed (CPU ONNX Runtime / OpenVINO rows in their own processes, both columns) and scored
    with --data, the scoring after the timing children (docs/BENCHMARKS.md, INT8 round 4). Scored on 24 of
    coco128's val images at 192x320: the rows' agreement is the point, and the whole set at 384x640 made this the
    suite's slowest test."""
    root = coco128.parent
    (tmp_path / "val.txt").write_text("".join(f"{p}\n" for p in sorted((root / "images/val2017").glob("*.jpg"))[:24]))
    names = __import__("yaml").safe_load(coco128.read_text())["names"]
    subset = tmp_path / "coco24.yaml"
    subset.write_text(__import__("yaml").safe_dump({"path": str(root), "val": str(tmp_path / "val.txt"), "names": names}))
    out = tmp_path / "bench.json"
    r = _run(
        "-m",
        "deploy.bench",
        "--weights",
        str(yolov5n_pt),
        "--img",
        "192",
        "320",
        "--iters",
        "2",
        "--warmup",
        "1",
        "--rounds",
        "1",
        "--data",
        str(subset),
        "--json",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert {"machine", "iters", "rows"} <= result.keys()
    assert result["machine"]["cpu"] and {"isa", "threads"} <= result["machine"].keys()  # every figure names its CPU
    backends = [row["backend"] for row in result["rows"]]
    assert {"PyTorch FP32 CPU", "ONNX Runtime FP32 CPU", "ONNX Runtime FP16 CPU"} <= set(backends)
    kinds = {(row["runtime"], row["precision"]) for row in result["rows"]}  # fields, read from each graph's metadata
    assert {("pytorch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "fp16")} <= kinds
    for row in result["rows"]:
        for part in ("model", "end_to_end"):
            assert {"p50_ms", "p90_ms", "p99_ms", "images_per_s"} <= row[part].keys()
            assert 0 < row[part]["p50_ms"] <= row[part]["p99_ms"]
    alone = {row["backend"]: row["model"] for row in result["rows"] if row["backend"].startswith(("ONNX", "OpenVINO"))}
    assert alone["ONNX Runtime FP32 CPU"]["x_ort_fp32"] == 1.0  # CPU rows: own process, ratio from the same run
    assert all(m["process"] == "own, interleaved" and m["x_ort_fp32"] > 0 for m in alone.values())
    e2e = {row["backend"]: row["end_to_end"] for row in result["rows"] if row["backend"] in alone}
    assert all(e["process"] == "own, interleaved" and e["p50_ms"] > 0 for e in e2e.values())  # both columns
    assert e2e["ONNX Runtime FP32 CPU"]["x_ort_fp32"] == 1.0
    assert "process" not in next(row for row in result["rows"] if row["backend"] == "PyTorch FP32 CPU")["model"]
    assert out.with_suffix(".png").is_file() and "p50 ms" in r.stdout and "x ORT32" in r.stdout
    torch_map = next(r for r in result["rows"] if r["backend"] == "PyTorch FP32 CPU")["accuracy"]["map50_95"]
    assert torch_map > 0.2 and all(abs(r["accuracy"]["map50_95"] - torch_map) < 0.02 for r in result["rows"]), [
        (r["backend"], r["accuracy"]["map50_95"]) for r in result["rows"]]


@pytest.mark.slow
def test_onnx_runtime_map_matches_pytorch_on_coco128(tmp_path, yolov5n_pt, coco128):
    """The exported graph scores what the PyTorch model scores on all of coco128 (at 320: parity, not accuracy,
    is the point, and 640 made this a 45-second test)."""
    from deploy import export
    from detect.backend import TorchBackend
    from detect.data.config import load_data_config
    from detect.data.labels import scan_split
    from detect.evaluate import EvalConfig, run_eval
    from detect.infer.runtimes import OnnxBackend

    export.main(["--weights", str(yolov5n_pt), "--img", "320", "320", "--dynamic-batch", "16", "--out", str(tmp_path)])
    cfg = load_data_config(coco128)
    samples, _ = scan_split(cfg, "val", progress=False)
    shape = (320, 320)
    c = EvalConfig(320, fixed_shape=shape, progress=False)
    ours, _ = run_eval(TorchBackend(yolov5n_pt, torch.device("cpu")), samples, cfg.names, c)
    ort, _ = run_eval(OnnxBackend(tmp_path / "model.onnx", torch.device("cpu")), samples, cfg.names, c)
    assert abs(ours["map50_95"] - ort["map50_95"]) <= 0.002 and abs(ours["map50"] - ort["map50"]) <= 0.002


def test_mixed_ensemble_and_tta_on_a_fixed_shape_graph(exported, yolov5n_pt, tmp_path):
    """A .pt and an .onnx fused by WBF; TTA on the fixed 384x640 graph (scaled passes padded back)."""
    from tests.conftest import shared_path

    for extra in (["--weights", str(yolov5n_pt), str(exported / "model.onnx")], ["--weights", str(exported / "model.onnx"), "--augment"]):
        out = tmp_path / "d.json"
        r = run_cli("detect.predict", *extra, "--source", shared_path("images/zidane.jpg"), "--img", "640",
                    "--out", tmp_path / "o", "--json", out)  # in this process: predict's start-up is tested elsewhere
        assert r.returncode == 0, r.stderr
        people = [d for d in json.loads(out.read_text()) if d["category_id"] == 0 and d["score"] > 0.4]
        assert len(people) >= 2, extra  # the two players


def test_isolated_timing_runs_each_model_in_its_own_process(exported, tmp_path):
    from deploy.session_timer import median_ms, time_isolated

    files = {"a": exported / "model.onnx", "b": exported / "model_fp16.onnx", "c": exported / "model.onnx",
             "d": exported / "model.onnx"}
    times = time_isolated(files, (1, 3, 384, 640), rounds=2, iters=3, warmup=1,
                          runtimes={"c": "openvino", "d": "ort-1thread"})
    assert {k: [len(r) for r in v] for k, v in times.items()} == {k: [3, 3] for k in files}
    assert all(0 < t < 10 for v in times.values() for r in v for t in r)
    assert median_ms([[0.001, 0.003, 0.002], [0.010, 0.004, 0.005]]) == pytest.approx(3.5)
    with pytest.raises(RuntimeError, match="missing.onnx"):
        time_isolated({"x": tmp_path / "missing.onnx"}, (1, 3, 384, 640), rounds=1, iters=1)


def test_one_thread_runtime_runs_onnx_runtime_on_one_thread(exported, monkeypatch):
    """'ort-1thread' asks ONNX Runtime for one intra-op thread (the default asks for none: every core), and is
    refused for end-to-end timing, which runs the deployment's own backends."""
    import onnxruntime as ort

    from deploy import session_timer

    asked = []
    real = ort.InferenceSession

    def spy(path, options=None, **kwargs):
        asked.append(options.intra_op_num_threads)
        return real(path, options, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    x = np.zeros((1, 3, 384, 640), np.float32)
    for runtime in ("ort", "ort-1thread"):
        session_timer._runner(str(exported / "model.onnx"), runtime)(x)
    assert asked == [0, 1]
    with pytest.raises(ValueError, match="model alone"):
        session_timer.time_session(str(exported / "model.onnx"), (1, 3, 384, 640), 1, 0, "ort-1thread", image="x.jpg")


def test_isolated_pipeline_timing_adds_the_end_to_end_call(exported, tmp_path):
    """Both columns from one child per file and round; end to end (a 1080x1920 JPEG decoded, letterboxed,
    inferred, NMS) takes longer than the model alone, in ONNX Runtime and OpenVINO alike. One round: the rounds'
    interleaving is the model-only path's (``_interleaved``, tested above with two)."""
    from deploy.session_timer import time_isolated_pipeline

    image = tmp_path / "frame.jpg"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (1080, 1920, 3), dtype=np.uint8))
    files = {"ort": exported / "model.onnx", "ov": exported / "model.onnx"}
    timed = time_isolated_pipeline(files, image, (1, 3, 384, 640), rounds=1, iters=2, warmup=1, runtimes={"ov": "openvino"})
    assert {k: {p: [len(r) for r in v[p]] for p in v} for k, v in timed.items()} == {
        k: {"model": [2], "end_to_end": [2]} for k in files}
    for parts in timed.values():
        assert min(t for r in parts["end_to_end"] for t in r) > min(t for r in parts["model"] for t in r) > 0


def test_a_cpu_runtime_alone_gets_the_cores(exported, yolov5n_pt):
    """val and predict leave torch one thread while ONNX Runtime / OpenVINO run every model (torch's spinning
    OpenMP workers took the runtime's cores: docs/BENCHMARKS.md, INT8 round 5), keep every thread with a
    PyTorch member, an OpenVINO model built meanwhile still gets the former count, and torch has its threads
    back afterwards (a library caller trained on one thread after an in-process val of an OpenVINO model)."""
    from detect.backend import TorchBackend
    from detect.evaluate import TimedBackend
    from detect.infer.runtimes import OnnxBackend, OpenVinoBackend
    from detect.infer.threads import settled_cpu_threads

    cpu, threads = torch.device("cpu"), torch.get_num_threads()
    ort = TimedBackend(OnnxBackend(str(exported / "model.onnx"), cpu))
    with settled_cpu_threads([ort, TorchBackend(yolov5n_pt, cpu)]) as settled:
        assert not settled and torch.get_num_threads() == threads
    with settled_cpu_threads([ort]) as settled:
        assert settled and torch.get_num_threads() == 1
        ov = OpenVinoBackend(str(exported / "model.onnx"), cpu)
        assert int(ov.compiled.get_property("INFERENCE_NUM_THREADS")) == threads
    assert torch.get_num_threads() == threads


def _as_official_export(ours: Path, out: Path) -> None:
    """Our FP32 graph written the way YOLOv5's export.py writes one: metadata ``stride`` "32" and ``names`` a Python
    dict's repr, the weights in a ``.onnx.data`` file beside it, and an extra output (the input, echoed) listed
    before the decoded one, whose last dimension is not 5 + nc."""
    m = onnx.load(str(ours))
    names = json.loads(next(p.value for p in m.metadata_props if p.key == "names"))
    del m.metadata_props[:]
    for key, value in (("stride", "32"), ("names", repr(dict(enumerate(names))))):
        entry = m.metadata_props.add()
        entry.key, entry.value = key, value
    m.graph.node.append(onnx.helper.make_node("Identity", ["images"], ["echo"]))
    echo = onnx.helper.make_tensor_value_info("echo", onnx.TensorProto.FLOAT, [d.dim_value for d in
                                               m.graph.input[0].type.tensor_type.shape.dim])
    m.graph.output.insert(0, echo)
    onnx.save(m, str(out), save_as_external_data=True, all_tensors_to_one_file=True, location=out.name + ".data")


def test_an_official_exporter_onnx_scores_as_our_own(tmp_path, yolov5n_pt, coco128):
    """Metadata parsed as literals, the decoded output found by its width, external weights read from beside
    the file: the same mAP on coco128 as our own export, in ONNX Runtime and in OpenVINO."""
    from deploy.export import export
    from detect.data.config import load_data_config
    from detect.data.labels import scan_split
    from detect.evaluate import fixed_shape_map
    from detect.infer.runtimes import OnnxBackend, OpenVinoBackend

    ours = export(yolov5n_pt, tmp_path / "ours", (320, 320)).fp32
    theirs = tmp_path / "official" / "yolov5n.onnx"
    theirs.parent.mkdir()
    _as_official_export(ours, theirs)
    assert (tmp_path / "official" / "yolov5n.onnx.data").stat().st_size > 1e6
    meta = read_metadata(theirs)
    assert meta["names"][:2] == ["person", "bicycle"] and meta["stride"] == 32 and meta["output_name"] != "echo"
    assert meta["input_shape"] == [1, 3, 320, 320] and meta["exporter"] == "yolov5 export.py"
    cfg = load_data_config(coco128)
    samples = scan_split(cfg, "val", progress=False)[0][:32]
    cpu = torch.device("cpu")
    ref = fixed_shape_map(OnnxBackend(ours, cpu), samples, cfg.names, (320, 320))
    for backend in (OnnxBackend(theirs, cpu), OpenVinoBackend(theirs, cpu)):
        assert fixed_shape_map(backend, samples, cfg.names, (320, 320)) == pytest.approx(ref, abs=1e-4)
    assert ref["map50_95"] > 0.1
