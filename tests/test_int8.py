"""INT8 QDQ export, the OpenVINO backend, and the TensorRT runtime's CPU-checkable logic."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from tests.clirun import run_cli
from tests.conftest import shared_path

REPO = Path(__file__).resolve().parents[1]
# INT8 against FP32 on bus.jpg for anchors FP32 scores above 0.25 (measured: about 0.1 and 4 px
# with 16 calibration images; 0.16 / 11 px worst case over 8 held-out coco128 images, 120 images).
SCORE_TOL, BOX_TOL_PX = 0.2, 15.0


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory, yolov5n_pt, coco128):
    from deploy.export import export
    from deploy.quantize import quantize, split_images
    from detect.data.config import load_data_config

    out = tmp_path_factory.mktemp("int8")
    done = export(yolov5n_pt, out, (384, 640))
    fp32, meta = done.fp32, done.meta
    calib, _ = split_images(load_data_config(coco128).split("train").images, 16)
    info = quantize(fp32, out / "model_int8.onnx", calib, meta)
    return fp32, out / "model_int8.onnx", meta, calib, info


def _bus(meta):
    from deploy.quantize import letterboxed

    return next(letterboxed([shared_path("images/bus.jpg")], (384, 640), 32))


def test_qdq_keeps_head_decode_and_stem_in_float(int8_model):
    from deploy.quantize import head_and_decode, stem_nodes

    fp32, int8, _, _, info = int8_model
    ref = onnx.load(str(fp32))
    head, decode = head_and_decode(ref)
    assert len(head) == 3 and any("Sigmoid" in n for n in decode) and any("Pow" in n for n in decode)
    m = onnx.load(str(int8))
    producer = {o: n for n in m.graph.node for o in n.output}
    by_name = {n.name: n for n in m.graph.node}
    dq_inputs = lambda n: [i for i in n.input if i in producer and producer[i].op_type == "DequantizeLinear"]  # noqa: E731
    for name in decode:  # no quantised tensor enters the decode
        assert name in by_name and not dq_inputs(by_name[name]), name
    for name in [*head, *stem_nodes(ref)]:  # float weights: these compute in float (their input may carry
        node = by_name[name]  # the rounding of a quantised producer that also feeds quantised layers)
        assert node.op_type != "Conv" or node.input[1] not in producer, name
    assert not dq_inputs(by_name["/model.0/conv/Conv"])  # the stem sees the raw image
    quantised_convs = [n for n in m.graph.node if n.op_type == "Conv" and n.input[1] in producer]
    assert len(quantised_convs) == 60 - 3 - 2 and info["excluded"] == ["decode", "head", "stem"]


def test_int8_output_close_to_fp32_on_a_photo(int8_model):
    import onnxruntime as ort

    fp32, int8, meta, _, _ = int8_model
    x = _bus(meta)
    a, b = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0] for p in (fp32, int8))
    sa, sb = a[..., 4] * a[..., 5:].max(-1), b[..., 4] * b[..., 5:].max(-1)
    keep = sa > 0.25
    assert keep.sum() > 10  # the bus and the people
    assert np.abs(sa - sb)[keep].max() < SCORE_TOL and np.abs(a[..., :4] - b[..., :4])[keep].max() < BOX_TOL_PX


def test_calibration_is_deterministic(int8_model, tmp_path):
    from deploy.quantize import quantize

    fp32, int8, meta, calib, _ = int8_model
    again = tmp_path / "model_int8.onnx"
    quantize(fp32, again, list(calib), meta)
    first = json.loads((int8.parent / "model_int8.calib.json").read_text())
    second = json.loads((tmp_path / "model_int8.calib.json").read_text())
    assert first == second
    scales = lambda m: {t.name: onnx.numpy_helper.to_array(t).tolist() for t in m.graph.initializer if "scale" in t.name}  # noqa: E731
    assert scales(onnx.load(str(int8))) == scales(onnx.load(str(again)))


def test_openvino_matches_onnx_runtime_fp32(int8_model):
    from detect.infer.runtimes import OnnxBackend, OpenVinoBackend

    fp32, int8, meta, _, _ = int8_model
    x = torch.from_numpy(_bus(meta))
    ort_out = OnnxBackend(fp32, torch.device("cpu"))(x)
    ov_out = OpenVinoBackend(fp32, torch.device("cpu"))(x)
    rel = lambda a, b: float((a - b).abs().max() / b.abs().max())  # noqa: E731
    assert rel(ov_out[..., :4], ort_out[..., :4]) < 1e-4 and rel(ov_out[..., 4:], ort_out[..., 4:]) < 1e-4
    ov_int8 = OpenVinoBackend(int8, torch.device("cpu"))(x)  # the QDQ file runs in OpenVINO too
    keep = ort_out[0, :, 4] > 0.5
    assert keep.any() and (ov_int8[0, keep, 4] - ort_out[0, keep, 4]).abs().max() < SCORE_TOL


def test_openvino_and_int8_through_val_json(int8_model, coco128, tmp_path):
    from detect.val import main

    _, int8, _, _, _ = int8_model
    out = tmp_path / "m.json"
    assert main(["--weights", str(int8), "--data", str(coco128), "--img", "640", "--backend", "openvino",
                 "--workers", "0", "--batch", "8", "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["backend"] == [{"runtime": "openvino", "precision": "int8", "inference_precision": "f32"}]
    assert m["map50_95"] > 0.25  # yolov5n: 0.34 in FP32 at 384x640


def test_export_int8_flags_need_calibration_data(yolov5n_pt, tmp_path):
    r = run_cli("deploy.export", "--weights", yolov5n_pt, "--int8", "--out", tmp_path)  # in this process
    assert r.returncode == 2 and "--int8 needs --calib-data" in r.stderr


def test_trt_int8_refuses_without_cuda(int8_model):
    from deploy.trt import missing_requirements

    if not missing_requirements():
        pytest.skip("CUDA and TensorRT are present: the refusal cannot be exercised")
    fp32 = int8_model[0]
    r = run_cli("deploy.trt", "--onnx", fp32, "--int8")
    lines = [s for s in r.stderr.splitlines() if s.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "missing a CUDA GPU" in lines[0]


def test_engine_chunks_like_onnx_runtime():
    from detect.infer.tensorrt import chunks

    assert chunks(16, 1, 1, fixed=True) == [(i, i + 1, 1) for i in range(16)]  # batch-1 engine, val --batch 16
    assert chunks(10, 4, 4, fixed=True) == [(0, 4, 4), (4, 8, 4), (8, 10, 4)]  # the last chunk padded
    assert chunks(10, 1, 8, fixed=False) == [(0, 8, 8), (8, 10, 2)]  # dynamic: no padding
    assert chunks(3, 2, 8, fixed=False) == [(0, 3, 3)]


def test_fp16_twins_are_what_tensorrt_11_builds_from(tmp_path, yolov5n_pt):
    from deploy.export import fp16_twin, main

    assert main(["--weights", str(yolov5n_pt), "--img", "320", "320", "--nms", "--out", str(tmp_path)]) == 0
    for name in ("model.onnx", "model_nms.onnx", "model_trt_nms.onnx"):
        assert fp16_twin(tmp_path / name).is_file(), name
    fp16 = onnx.load(str(tmp_path / "model_fp16.onnx"))  # the decode stays FP32: anchor grids are float32
    from deploy.quantize import head_and_decode

    decode = set(head_and_decode(onnx.load(str(tmp_path / "model.onnx")))[1])
    consts = {i for n in fp16.graph.node if n.name in decode for i in n.input}
    inits = [t for t in fp16.graph.initializer if t.name in consts]
    assert any(t.data_type == onnx.TensorProto.FLOAT for t in inits)
    assert not any(t.data_type == onnx.TensorProto.FLOAT16 for t in inits)


def test_bench_uses_onnx_runtime_providers_it_has(monkeypatch):
    import onnxruntime as ort

    from deploy import bench

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU host with the CPU onnxruntime build
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert bench._ort_device() == (torch.device("cpu"), "CPU")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert bench._ort_device()[1] == "CUDA"


def test_export_int8_cli_end_to_end(tiny_synthetic, tmp_path):
    from detect.data.synthetic import CLASSES
    from detect.model import build_model, default_arch
    from detect.weights import atomic_save, make_checkpoint

    torch.manual_seed(0)
    ckpt = tmp_path / "m.pt"
    atomic_save(make_checkpoint(build_model(default_arch("yolov5n", nc=len(CLASSES))), CLASSES), ckpt)
    out = tmp_path / "deploy"
    r = run_cli("deploy.export", "--weights", ckpt, "--img", "320", "320", "--int8", "--calib-data", tiny_synthetic,
                "--calib-images", "4", "--calib-method", "minmax", "--out", out)  # export's start-up: test_deploy.py
    assert r.returncode == 0, r.stderr
    assert "model_int8.onnx, model_int8_trt.onnx: minmax calibration on 2 train images" in r.stdout  # 10 train - 8 held out
    report = json.loads((out / "export.json").read_text())["int8"]
    assert report["error"]["images"] == 8 and set(report["map"]) == {"fp32", "int8"}
    from detect.infer.metadata import read_metadata

    for name, acts in (("model_int8.onnx", "uint8"), ("model_int8_trt.onnx", "int8 symmetric")):
        meta = read_metadata(out / name)
        assert meta["precision"] == "int8" and meta["quantization"]["activations"] == acts
        assert meta["calib_data"] == str(tiny_synthetic)
    assert (out / "model_int8.calib.json").is_file()


def _one_conv_graph(path: Path, weight: float = 1 / 27, bias: float = 0.0) -> None:
    """images (1, 3, 32, 32) -> Conv 3x3 (4 filters of ``weight``, + ``bias``) -> out: calibrates in a blink."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((4, 3, 3, 3), weight, np.float32), "w")
    b = numpy_helper.from_array(np.full(4, bias, np.float32), "b")
    node = helper.make_node("Conv", ["images", "w", "b"], ["out"], name="conv", pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 32, 32])], [w, b])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


PLAIN_META = {"input_shape": [1, 3, 32, 32], "stride": 32}  # what quantize reads of a _one_conv_graph export


def _plain_images(folder: Path, n: int, white: set[int]) -> list[Path]:
    """``n`` 32x32 PNGs, black except the indices in ``white``: calibration sets whose ranges are known."""
    import cv2

    paths = [folder / f"{i:02d}.png" for i in range(n)]
    for i, path in enumerate(paths):
        cv2.imwrite(str(path), np.full((32, 32, 3), 255 if i in white else 0, np.uint8))
    return paths


def test_minmax_calibration_sees_every_image(tmp_path):
    """ONNX Runtime's MinMax calibrator drops each full chunk of CalibMaxIntermediateOutputs outputs
    (#18893): with 16 per chunk, 16 images used to stop with "No data is collected" and 17 to keep the
    last image's range alone. One white image among black ones must set the input's range."""
    from deploy.quantize import quantize

    fp32 = tmp_path / "model.onnx"
    _one_conv_graph(fp32)
    paths = _plain_images(tmp_path, 17, white={0})
    for n in (16, 17):
        out = tmp_path / str(n) / "model_int8.onnx"
        out.parent.mkdir()
        quantize(fp32, out, paths[:n], PLAIN_META, method="minmax", exclude=["none"])
        table = json.loads((out.parent / "model_int8.calib.json").read_text())
        entry = table["data"]["images"]  # ONNX Runtime's TensorsData as JSON
        assert (entry["lowest"]["data"], entry["highest"]["data"]) == ([0.0], [1.0])


def test_saved_ranges_follow_the_weights(tmp_path):
    """The ranges saved beside model_int8.onnx are reused only for the weights they were measured on: other
    weights exported into the same folder (same images, same method) are recalibrated, not given stale ranges."""
    from deploy.quantize import quantize

    paths = _plain_images(tmp_path, 2, white={1})
    fp32, out = tmp_path / "model.onnx", tmp_path / "model_int8.onnx"
    highest = []
    for weight in (1 / 27, 2 / 27):  # a white image: conv outputs reach 1.0, then 2.0
        _one_conv_graph(fp32, weight=weight)
        quantize(fp32, out, paths, PLAIN_META, method="minmax", exclude=["none"])
        highest.append(json.loads((tmp_path / "model_int8.calib.json").read_text())["data"]["out"]["highest"]["data"])
    assert highest == [pytest.approx([1.0], abs=1e-4), pytest.approx([2.0], abs=1e-4)]


def test_calibration_runs_in_chunks_and_every_chunk_counts(tmp_path):
    """Calibration holds every intermediate tensor of the images it is given at once (yolov5s, 120 images at
    384x640: 24 GiB), so it runs in chunks of at most CHUNK_IMAGES; the histograms merge across them: 32
    images in two chunks of 16, the only bright one in the second, must still set the input's range."""
    from deploy.quantize import CHUNK_IMAGES, LetterboxReader, chunk_size, quantize

    assert [chunk_size(n, 16) for n in (120, 128, 17, 1, 32)] == [15, 16, 1, 1, 16]
    fp32 = tmp_path / "model.onnx"
    _one_conv_graph(fp32)
    paths = _plain_images(tmp_path, 2 * CHUNK_IMAGES, white={20})
    reader = LetterboxReader(paths, (32, 32), 32, batch=4)
    reader.set_range(start_index=5, end_index=6)  # batch 5: images 20-23
    assert len(reader) == 8 and reader.get_next()["images"].max() == 1.0 and reader.get_next() is None
    out = tmp_path / "q" / "model_int8.onnx"
    out.parent.mkdir()
    quantize(fp32, out, paths, PLAIN_META, method="percentile", exclude=["none"])
    entry = json.loads((out.parent / "model_int8.calib.json").read_text())["data"]["images"]
    assert entry["highest"]["data"] == pytest.approx(1.0, abs=0.01)  # 0 if the second chunk had been lost


def test_calibration_that_numpy_cannot_bin_is_one_clear_error(tmp_path):
    """A tensor whose values differ by less than float32 resolves (10^6 + a few hundredths; seen with random
    yolov5s weights) makes numpy refuse the histogram: one UsageError naming the file, no traceback."""
    from deploy.quantize import quantize
    from detect.errors import UsageError

    fp32 = tmp_path / "model.onnx"
    _one_conv_graph(fp32, weight=0.0026, bias=1e6)
    paths = _plain_images(tmp_path, 2, white={1})
    with pytest.raises(UsageError, match="model.onnx: INT8 calibration failed"):
        quantize(fp32, tmp_path / "model_int8.onnx", paths, PLAIN_META, exclude=["none"])
