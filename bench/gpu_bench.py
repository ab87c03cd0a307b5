"""GPU throughput of the `sam-vit-base` preset: training steps and inference at 512 x 512 in bf16.

One self-contained script (it needs the repository's trainer package and its `trainer` extra, no
internet: weights are random, which costs the same FLOPs). For training, each step is forward, loss,
backward and a fused AdamW update under bf16 autocast, as `train` runs it; inference is a forward
pass under `torch.no_grad()`. Timing: CUDA-synchronised wall clock over the timed steps after
warm-up steps. FLOPs: torch.utils.flop_counter.FlopCounterMode over one step (matrix products,
convolutions and attention; element-wise work is not counted, so MFU is a lower bound). MFU = FLOPs
per second / the device's dense bf16 peak (H100/H200 SXM: 989 TFLOP/s). Peak memory:
torch.cuda.max_memory_allocated.

    python bench/gpu_bench.py            # the full run (about a minute on an H100)
    python bench/gpu_bench.py --quick    # fewer steps
    python bench/gpu_bench.py --quick --preset tiny --size 128 --batch 2   # a CPU smoke test
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from segpipe.models.trainer_io import TrainingConfig
from segpipe_trainer.model import Segmenter, build_model, count_parameters
from segpipe_trainer.train import SegmentationLoss, build_optimizer

#: Dense bf16 tensor-core peaks in FLOP/s, by a fragment of the device name (first match wins).
BF16_PEAKS: tuple[tuple[str, float], ...] = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H800", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A10G", 70e12),
    ("L40S", 362e12),
    ("L4", 121e12),
)


def bf16_peak(device: torch.device) -> tuple[str, float | None]:
    """(device name, dense bf16 peak FLOP/s or None when unknown)."""
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, next((peak for fragment, peak in BF16_PEAKS if fragment in name), None)


@dataclass(frozen=True)
class Setup:
    preset: str
    size: int
    batch: int
    warmup: int
    steps: int
    device: torch.device

    @property
    def bf16(self) -> bool:
        return self.device.type == "cuda"


@dataclass(frozen=True)
class Figures:
    images_per_second: float
    seconds_per_step: float
    flops_per_step: float
    peak_memory_gib: float | None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(setup: Setup) -> torch.autocast:
    return torch.autocast(device_type=setup.device.type, dtype=torch.bfloat16, enabled=setup.bf16)


def _measure(step: Callable[[], None], *, setup: Setup) -> Figures:
    """Warm up, count one step's FLOPs, then time `setup.steps` steps."""
    for _ in range(setup.warmup):
        step()
    _sync(setup.device)
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    _sync(setup.device)
    if setup.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(setup.device)
    started = time.perf_counter()
    for _ in range(setup.steps):
        step()
    _sync(setup.device)
    seconds = (time.perf_counter() - started) / setup.steps
    memory = torch.cuda.max_memory_allocated(setup.device) / 2**30 if setup.device.type == "cuda" else None
    return Figures(
        images_per_second=setup.batch / seconds,
        seconds_per_step=seconds,
        flops_per_step=float(counter.get_total_flops()),
        peak_memory_gib=memory,
    )


def _model(setup: Setup) -> Segmenter:
    torch.manual_seed(0)
    model = build_model(
        preset=setup.preset, num_classes=2, model_type="instance", in_channels=3, weights="random"
    )
    return model.to(setup.device)


def _inputs(setup: Setup) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """images B x 3 x S x S, classes int64 B x S x S, distance B x S x S, on the device."""
    generator = torch.Generator().manual_seed(0)
    shape = (setup.batch, setup.size, setup.size)
    images = torch.randn(setup.batch, 3, setup.size, setup.size, generator=generator)
    classes = torch.randint(0, 3, shape, generator=generator)
    distance = torch.rand(shape, generator=generator)
    return images.to(setup.device), classes.to(setup.device), distance.to(setup.device)


def bench_training(setup: Setup) -> Figures:
    """Training steps as `train` runs them: bf16 autocast forward and loss, backward, AdamW."""
    model = _model(setup).train()
    config = TrainingConfig(
        model_type="instance", classes=["a", "b"], preset=setup.preset, epochs=1, tile_size=setup.size, seed=0
    )
    optimizer = build_optimizer(model, config=config)
    loss_fn = SegmentationLoss(class_weights=torch.ones(3), num_classes=2).to(setup.device)
    images, classes, distance = _inputs(setup)

    def step() -> None:
        with _autocast(setup):
            outputs = model(images)
        loss = loss_fn(outputs, classes, distance)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return _measure(step, setup=setup)


def bench_inference(setup: Setup) -> Figures:
    """Forward passes in eval mode without gradients (sliding-window inference runs these)."""
    model = _model(setup).eval()
    images, _, _ = _inputs(setup)

    def step() -> None:
        with torch.no_grad(), _autocast(setup):
            model(images)

    return _measure(step, setup=setup)


def _row(name: str, figures: Figures, *, peak: float | None) -> str:
    tflops = figures.flops_per_step / figures.seconds_per_step / 1e12
    mfu = f"{100 * tflops * 1e12 / peak:6.1f}%" if peak else "    n/a"
    memory = f"{figures.peak_memory_gib:8.2f}" if figures.peak_memory_gib is not None else "     n/a"
    return (
        f"{name:<10} {figures.images_per_second:>9.1f} {1000 * figures.seconds_per_step:>9.1f} "
        f"{figures.flops_per_step / 1e12:>10.3f} {tflops:>9.1f} {mfu:>7} {memory}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Print the table; `argv` are command-line options (none: the full run)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="2 warm-up and 5 timed steps instead of 5 and 20"
    )
    parser.add_argument("--preset", default="sam-vit-base")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(list(argv or []))
    device = torch.device(args.device)
    warmup, steps = (2, 5) if args.quick else (5, 20)
    setup = Setup(
        preset=args.preset, size=args.size, batch=args.batch, warmup=warmup, steps=steps, device=device
    )
    name, peak = bf16_peak(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    parameters = count_parameters(build_model(preset=args.preset, num_classes=2, model_type="instance"))
    peak_text = f"{peak / 1e12:.0f} TFLOP/s" if peak else "unknown"
    print(f"device: {name}; bf16 peak: {peak_text}; torch {torch.__version__}")
    print(
        f"preset {args.preset} ({parameters / 1e6:.1f} M parameters), {args.size}x{args.size}x3, "
        f"batch {args.batch}, {'bf16 autocast' if setup.bf16 else 'fp32'}; "
        f"{steps} timed steps after {warmup} warm-up steps"
    )
    header = ("phase", "images/s", "ms/step", "TFLOP/step", "TFLOP/s", "MFU", "peak GiB")
    widths = (-10, 9, 9, 10, 9, 7, 8)
    print(
        " ".join(f"{text:<{-w}}" if w < 0 else f"{text:>{w}}" for text, w in zip(header, widths, strict=True))
    )
    print(_row("training", bench_training(setup), peak=peak), flush=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    print(_row("inference", bench_inference(setup), peak=peak), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
