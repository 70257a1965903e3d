"""Device selection: CUDA first, then Apple MPS, then the CPU, overridable by name."""
from __future__ import annotations

import functools

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
        raise ValueError(f"device={name!r} but no CUDA GPU is available here; use device='auto' or 'cpu'")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device={name!r} but Apple MPS is not available here; use device='auto' or 'cpu'")
    return device


#: ``--precision``: "auto" picks bf16 where it is fast (CUDA; a CPU with bfloat16 units), else fp32.
PRECISIONS = ("auto", "bf16", "fp32")
# CPU flags (Linux /proc/cpuinfo) of native bfloat16 arithmetic: AVX512-BF16 and AMX-BF16.
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (x86 AVX512-BF16 or AMX-BF16), read once.

    Without such units PyTorch emulates bf16 on the CPU, which is many times SLOWER than float32
    (measured on an AVX2-only CPU: a training step 20x slower), so ``precision="auto"`` then keeps
    float32. Reads the flags of ``/proc/cpuinfo`` (Linux); elsewhere returns False.

    Example:
        >>> isinstance(cpu_has_native_bf16(), bool)
        True
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in _BF16_FLAGS)


def cpu_name() -> str:
    """The CPU's model name and its bfloat16 units (they change the CPU's precision): the machine of a figure.

    Example:
        >>> cpu_name().endswith(")")
        True
    """
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return f"{platform.processor() or platform.machine()} (bf16 units unknown)"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                platform.machine())
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    units = [f for f in _BF16_FLAGS if f in flags]
    return f"{name} ({', '.join(units) if units else 'no bf16 units'})"


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The mixed-precision dtype of the model's forward on ``device`` (``None``: plain float32).

    ``"auto"``: bf16 on CUDA, and on a CPU with native bf16 units (:func:`cpu_has_native_bf16`);
    float32 elsewhere (MPS, other CPUs). ``"bf16"`` and ``"fp32"`` force the choice. The loss is
    always computed in float32.

    Raises:
        ValueError: an unknown ``precision``.

    Example:
        >>> autocast_dtype(torch.device("cpu"), "fp32") is None, autocast_dtype(torch.device("cpu"), "bf16")
        (True, torch.bfloat16)
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is unknown; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "bf16" or device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        return torch.bfloat16
    return None


def uses_channels_last(device: torch.device) -> bool:
    """Whether the model and its inputs use channels_last memory on ``device`` (CUDA and CPU: faster convs).

    Measured on a 2-core AVX2 CPU, the default SmallConvNet step: 1.8x faster than NCHW in float32.
    """
    return device.type in ("cuda", "cpu")


def describe_precision(device: torch.device, precision: str = "auto") -> str:
    """One line saying how the model runs on ``device``, and why, for the start of a run.

    Example:
        >>> describe_precision(torch.device("cpu"), "fp32")
        'precision: float32 (as asked), channels_last'
    """
    amp = autocast_dtype(device, precision)
    name = "bf16 autocast, loss in float32" if amp is not None else "float32"
    if precision != "auto":
        why = "as asked"
        if amp is not None and device.type == "cpu" and not cpu_has_native_bf16():
            why += ("; this CPU has no bfloat16 units, so bf16 is emulated and much slower: use "
                    "TrainConfig.precision='auto'")
    elif device.type == "cpu":
        why = "this CPU has bfloat16 units" if amp is not None else "this CPU has no bfloat16 units"
    else:
        why = f"the default on {device.type}"
    layout = ", channels_last" if uses_channels_last(device) else ""
    return f"precision: {name} ({why}){layout}"
