"""Device choice (`--device auto|cpu|cuda`) and the process's peak memory."""

from __future__ import annotations

import contextlib
import resource
import sys
from collections.abc import Iterator

import torch

from mmlbench.errors import MMLBenchError, unknown_name

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu; cuda without a usable GPU is an error."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise unknown_name("device", name, DEVICES)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MMLBenchError(
            f"--device {name} was asked for, but this torch ({torch.__version__}) sees no CUDA GPU; use --device cpu"
        )
    return torch.device(name)


def check_precision(precision: str, device: torch.device) -> None:
    if precision != "fp32" and device.type != "cuda":
        raise MMLBenchError(f"--precision {precision} is a CUDA setting, but this run is on {device.type}; use --precision fp32")


@contextlib.contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """Float32 matrix products (cuBLAS) in `precision` for the block: tf32 turns on TensorFloat-32.

    fp32 leaves torch's setting alone (IEEE float32 unless the process turned TF32 on itself).
    Only torch's newer `fp32_precision` flag is touched: mixing it with `allow_tf32` is an error.
    """
    if precision == "fp32":
        yield
        return
    matmul = torch.backends.cuda.matmul
    previous, matmul.fp32_precision = matmul.fp32_precision, precision
    try:
        yield
    finally:
        matmul.fp32_precision = previous


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int:
    """CUDA: max allocated since the last reset. CPU: the process's peak resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
