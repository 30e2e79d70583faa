"""The measuring tools every benchmark uses (``python -m clo bench`` and the studies in ``bench/``): a timer, arms
timed in turn with a warm-up and compared by their medians, peak memory, the machine's peak FLOP/s and the model
FLOPs of a token. Nothing here judges a time: it is reported."""
from __future__ import annotations

import gc
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager

# dense bf16 peak of known accelerators (FLOP/s, no sparsity)
GPU_PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12}


# ---------------------------------------------------------------------------------------------------
# Time
# ---------------------------------------------------------------------------------------------------


class Timer:
    """``with Timer() as t: …`` then ``t.seconds`` (wall clock, ``time.perf_counter``)."""

    seconds: float = 0.0

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def timed(fn: Callable, *args, **kwargs) -> tuple[float, object]:
    """(seconds, result) of one call."""
    with Timer() as t:
        result = fn(*args, **kwargs)
    return t.seconds, result


def best_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """The fastest of ``repeats`` timed calls after ``warmup`` untimed ones: a shared machine only ever makes a
    call slower."""
    for _ in range(warmup):
        fn()
    return min(timed(fn)[0] for _ in range(repeats))


def interleaved(arms: Iterable, repeats: int, run: Callable[[object], object]) -> tuple[dict, dict]:
    """Each arm's ``run(arm)`` timed in turn (A B A B …, ``repeats`` rounds) so that a slow patch of the machine
    hits every arm. Returns each arm's seconds per round and its result of the last round. Warm up first: the
    first call of a process pays one-time costs."""
    arms = list(arms)
    times: dict = {a: [] for a in arms}
    last: dict = {}
    for _ in range(repeats):
        for arm in arms:
            seconds, last[arm] = timed(run, arm)
            times[arm].append(seconds)
    return times, last


def median_ratio(arm: list[float], base: list[float], digits: int = 3) -> float:
    """The median of an arm's times over the median of the base arm's."""
    return round(statistics.median(arm) / statistics.median(base), digits)


class StepClock:
    """Timestamps of every logged step (logging_steps=1) and the cumulative token count TRL logs: an events sink
    for ``run_training`` (call it) or a ``TrainerCallback`` (:meth:`callback`)."""

    def __init__(self):
        self.times: list[float] = []
        self.tokens: list[float] = []

    def __call__(self, event: dict) -> None:
        row = event.get("metrics")
        if row is not None:
            self.times.append(time.perf_counter())
            self.tokens.append(row.get("num_tokens", 0.0))

    def callback(self):
        from transformers import TrainerCallback

        clock = self

        class _Cb(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kw):
                if logs and "train_runtime" not in logs:
                    clock.times.append(time.perf_counter())
                    clock.tokens.append(float(logs.get("num_tokens", 0.0)))

        return _Cb()

    def summary(self) -> tuple[float, float]:
        """(median seconds per step, tokens per step) over the steps after the first (warm-up) one."""
        if len(self.times) < 3:
            raise RuntimeError(f"need at least 3 logged steps to time, got {len(self.times)}")
        dts = [b - a for a, b in zip(self.times[1:], self.times[2:])] or [self.times[1] - self.times[0]]
        dtok = [b - a for a, b in zip(self.tokens[1:], self.tokens[2:])]
        return statistics.median(dts), statistics.mean(dtok) if dtok else 0.0


# ---------------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------------


def rss_bytes() -> int:
    """This process's resident memory now (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def release_memory() -> None:
    """Give freed heap back to the OS so the next phase's RSS starts low (glibc keeps it otherwise)."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@contextmanager
def peak_memory(device: str):
    """Yields a dict filled on exit with ``peak_gb`` and ``rise_gb`` (RSS sampled every 20 ms on CPU, allocated
    memory on CUDA) and the ``kind`` of memory measured."""
    import torch

    out: dict = {}
    release_memory()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        yield out
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        out.update(kind="cuda_max_memory_allocated", peak_gb=round(peak / 2**30, 3),
                   rise_gb=round((peak - before) / 2**30, 3))
        return
    before = rss_bytes()
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss_bytes())

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield out
    finally:
        done.set()
        t.join()
        peak[0] = max(peak[0], rss_bytes())
        out.update(kind="rss", peak_gb=round(peak[0] / 2**30, 3), rise_gb=round((peak[0] - before) / 2**30, 3))


# ---------------------------------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------------------------------


def measured_peak_flops(device: str, computes_in: str = "fp32") -> tuple[float, str]:
    """The machine's peak, estimated: a known accelerator's datasheet value, else a large matmul measured here in
    the precision the rows compute in (``computes_in``: a bf16 run's MFU against an fp32 peak would overstate)."""
    import torch

    if device.startswith("cuda"):
        name = torch.cuda.get_device_name()
        for key, peak in GPU_PEAKS.items():
            if key in name:
                return peak, f"{name} datasheet dense bf16"
        dtype, sizes = torch.bfloat16, (4096, 8192)
    else:
        dtype, sizes = (torch.bfloat16 if computes_in == "bf16" else torch.float32), (1024, 2048, 3072)
    # best of several short windows and sizes: a shared or throttled machine only ever makes a window slower
    best, best_n = 0.0, 0
    for _ in range(3):
        for n in sizes:
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)
            a @ b
            reps, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < 0.3:
                a @ b
                reps += 1
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            rate = 2 * n**3 * reps / (time.perf_counter() - t0)
            if rate > best:
                best, best_n = rate, n
    return best, (f"best measured {best_n}x{best_n} {str(dtype).replace('torch.', '')} matmul, "
                  f"{torch.get_num_threads()} threads")


def flop_params(total: int, embedding: int, tied: bool) -> int:
    """N of the FLOP estimate: every parameter but the input embedding, a lookup rather than a matmul, unless it
    is also the LM head."""
    return total if tied else total - embedding


def param_counts(model) -> tuple[int, int]:
    """(N of the FLOP estimate, trainable parameters) of a loaded model."""
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return flop_params(total, emb, model.config.get_text_config().tie_word_embeddings), trainable


def flops_per_token(n: int, n_trainable: int, reference: bool) -> float:
    """Model FLOPs of one trained token (PaLM's MFU convention): 2·N forward + 2·N activation backward +
    2·N_trainable weight backward, + 2·N for the reference forward where it runs."""
    return 2 * n + 2 * n + 2 * n_trainable + (2 * n if reference else 0)
