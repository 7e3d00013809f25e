"""make trt / make bench: ONNX export, TensorRT engines, runtimes and latency benchmarks.

Hardware-specific code (CUDA, TensorRT) lives in deploy/trt.py and deploy/engine.py only, and
fails with one clear line where the hardware or the library is missing.
"""
