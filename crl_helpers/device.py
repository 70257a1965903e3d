"""Device selection: CUDA first, then Apple MPS, then the CPU, overridable by name."""
from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    """Return the device to run on.

    ``"auto"`` picks CUDA when present, then Apple MPS, then the CPU; any other
    name (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``) is taken as asked, after
    checking that it is available.

    Raises:
        ValueError: the name is not a device, or that device is not available here.

    Example:
        >>> pick_device("cpu")
        device(type='cpu')
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={name!r} is not a device name; use 'auto', 'cpu', 'cuda' or 'mps'") from err
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={name!r} is not a device to train on; use 'auto', 'cpu', 'cuda' or 'mps'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but no CUDA GPU is available here; use --device auto or cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device={name!r} but Apple MPS is not available here; use --device auto or cpu")
    return device


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype used for the model on ``device``: bf16 on CUDA, none elsewhere.

    Example:
        >>> autocast_dtype(torch.device("cpu")) is None
        True
    """
    return torch.bfloat16 if device.type == "cuda" else None
