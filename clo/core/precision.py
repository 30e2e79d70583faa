"""The compute precision of training: fp32, or bf16 autocast over fp32 weights (docs/design.md, "Precision").

    >>> from clo.core.precision import resolve_precision
    >>> resolve_precision("fp32", "cpu")
    'fp32'

``precision`` is a setting of :class:`clo.core.spec.TrainSpec`:

- ``auto`` (the default): bf16 autocast where the hardware multiplies bf16 matrices natively — a GPU that
  supports bf16, or a CPU with AMX (Intel Sapphire Rapids and later) — and fp32 elsewhere. On an AMX CPU a
  bf16 matrix product is several times faster than an fp32 one (``python bench/levers.py --only bf16``);
  on a CPU without AMX, bf16 would be emulated and slower, so ``auto`` keeps fp32 there, and in runs of
  several CPU processes.
- ``fp32``: every product in fp32 — bit-for-bit what runs recorded before the setting existed computed on a
  CPU.
- ``bf16``: bf16 autocast on any device. On a CPU without AMX this is far slower than fp32: a 2400×576 by
  576×1536 product took 3.45 s in bf16 against 27 ms in fp32 on a 2-core AMD EPYC (AVX2; ``python
  bench/levers.py --only bf16_matmul``), where PyTorch's bf16 kernel ran on one thread; a run says so when
  it starts (:func:`describe_precision`).

Under bf16 the weights, the optimizer state and the updates stay fp32 (autocast runs the matrix products in
bf16 and the reductions that need range in fp32), as bf16 training on a GPU does; the reference log-probs are
computed under the same precision as training, so that the policy starts at reward 0.
"""
from __future__ import annotations

import contextlib

PRECISIONS = {
    "auto": "bf16 autocast where the hardware has native bf16 (a bf16 GPU; a CPU with AMX), fp32 elsewhere",
    "fp32": "fp32 everywhere (how every run computed on a CPU before this setting)",
    "bf16": "bf16 autocast over fp32 weights on any device (far slower than fp32 on a CPU without AMX)",
}

__all__ = ["PRECISIONS", "native_bf16", "resolve_precision", "describe_precision", "precision_context"]


def native_bf16(device_type: str) -> bool:
    """Whether ``device_type`` ('cpu', 'cuda') multiplies bf16 matrices natively (a GPU with bf16; AMX on a CPU)."""
    import torch

    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        caps = getattr(torch.cpu, "get_capabilities", None)
        if caps is not None:
            try:
                return bool(caps().get("amx_bf16"))
            except Exception:  # noqa: BLE001 - an unknown CPU: no claim of native bf16
                return False
        check = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(check and check())
    return False


def resolve_precision(precision: str, device: str, processes: int = 1) -> str:
    """'fp32' or 'bf16': what a run with this ``precision`` setting computes in on ``device`` ('cpu', 'cuda:0'),
    one of ``processes``. ``auto`` keeps several CPU processes (``accelerate launch`` over gloo, which this
    project uses to test the distributed path, not for speed) in fp32: bf16 there is measured by nobody here."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}. Choose one of: {', '.join(PRECISIONS)}.")
    if precision == "auto":
        kind = device.split(":")[0]
        if kind == "cpu" and processes > 1:
            return "fp32"
        return "bf16" if native_bf16(kind) else "fp32"
    return precision


def describe_precision(resolved: str, device: str) -> str:
    """One line for the run's log: what it computes in, and a warning where bf16 is not native to the device."""
    if resolved != "bf16":
        return "computing in fp32"
    line = "computing in bf16 (bf16 autocast over fp32 weights)"
    kind = device.split(":")[0]
    if not native_bf16(kind):
        why = "no AMX" if kind == "cpu" else "not supported by this GPU"
        line += (f" — warning: this {kind.upper()} has no native bf16 ({why}), so every bf16 product is emulated "
                 "and far slower than fp32; stop and use --precision auto or fp32 unless bf16 is what you test")
    return line


def precision_context(resolved: str, device: str):
    """The autocast context of a resolved precision ('bf16': torch.autocast to bf16; 'fp32': nothing)."""
    if resolved != "bf16":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
