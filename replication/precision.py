"""Float32 arithmetic precision, set explicitly by every run and recorded with its numbers.

In torch 2.14 cuDNN convolutions default to TensorFloat-32 (``torch.backends.cudnn.conv.
fp32_precision == "tf32"``): on an Ampere-or-newer GPU every convolution of an image flow's
dynamics would then round its inputs to a 10-bit mantissa, about 1e-3 relative error, against
solver tolerances of 1e-5. So nothing is left to the defaults: ``precision: float32`` (the
default) sets IEEE float32 for CUDA matrix products, cuDNN convolutions and RNNs and oneDNN on
the CPU; ``precision: tf32`` allows TF32 on the CUDA backends only, for speed, and the tables'
captions say so. Only torch's newer ``fp32_precision`` interface is used: mixing it with the
legacy ``allow_tf32`` flags is an error in torch.
"""

from __future__ import annotations

from typing import Literal

import torch

Precision = Literal["float32", "tf32"]
PRECISIONS: tuple[str, ...] = ("float32", "tf32")

# The backends whose float32 arithmetic can be lowered, and whether TF32 is allowed on them
# under ``precision: tf32`` (oneDNN's reduced modes change CPU results: never allowed).
_BACKENDS: dict[str, bool] = {
    "cuda.matmul": True,
    "cudnn.conv": True,
    "cudnn.rnn": True,
    "mkldnn.matmul": False,
    "mkldnn.conv": False,
    "mkldnn.rnn": False,
}
# TF32 units exist from compute capability 8.0 (Ampere) on; older GPUs compute in IEEE float32
# whatever the flags say.
_TF32_CAPABILITY = (8, 0)


def _backend(name: str) -> object:
    node = torch.backends
    for part in name.split("."):
        node = getattr(node, part)
    return node


def apply(precision: Precision) -> dict[str, str]:
    """Set every backend's float32 mode for ``precision``; return the flags now in force."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    for name, may_use_tf32 in _BACKENDS.items():
        mode = "tf32" if precision == "tf32" and may_use_tf32 else "ieee"
        _backend(name).fp32_precision = mode
    return flags()


def flags() -> dict[str, str]:
    """The ``fp32_precision`` flag of every backend, as torch reports it."""
    return {name: _backend(name).fp32_precision for name in _BACKENDS}


def _gpu_has_tf32(device: torch.device) -> bool:
    return torch.cuda.get_device_capability(device) >= _TF32_CAPABILITY


def effective(device: torch.device, current: dict[str, str] | None = None) -> str:
    """What float32 arithmetic a run on ``device`` gets: "float32" (IEEE) or "tf32" (TF32
    allowed in at least one CUDA backend, on a GPU that has TF32 units)."""
    current = flags() if current is None else current
    lowered = [name for name, mode in current.items() if mode not in ("ieee", "none")]
    if device.type == "cuda" and lowered and _gpu_has_tf32(device):
        return "tf32"
    if device.type == "cpu" and any(name.startswith("mkldnn") for name in lowered):
        return "reduced"
    return "float32"


def record(device: torch.device) -> dict:
    """The provenance entry: the effective precision and the flags behind it."""
    current = flags()
    return {"effective": effective(device, current), "flags": current}
