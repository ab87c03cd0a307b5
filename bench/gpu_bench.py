"""GPU throughput of a preset (default `sam-vit-base`, 512 x 512, bf16): training and inference, eager
versus each change of issue 12.

One self-contained script (it needs the repository's trainer package and its `trainer` extra, no
internet: weights are random, which costs the same FLOPs). Variants, each built afresh:

    eager              today's path: timm's attention, no compilation, AdamW (for-each)
    fast-attn          SAM attention on fused SDPA kernels (`fast_attention`)
    fused-adamw        fast-attn + fused AdamW (CUDA)
    compile            timm's attention, torch.compile (inductor)
    all                fast-attn + fused AdamW + torch.compile
    all+auto-batch     all, at the batch the memory probe picks (`accel.probe_batch_capacity`, <= 64)

A training step is forward, loss, backward and an AdamW update under bf16 autocast (fp32 on a CPU);
inference is a forward pass under `torch.no_grad()`. Timing: device-synchronised wall clock over the
timed steps after warm-up steps; "first s" is from the built model to the end of its first step,
compilation included (inductor's cache is a fresh folder per run unless --cache is given). FLOPs:
torch.utils.flop_counter.FlopCounterMode over one step of the eager variant (matrix products,
convolutions, attention; element-wise work is not counted, so MFU is a lower bound), per image, used
for every variant so MFU compares the same work. MFU = FLOPs per second / the device's dense bf16
peak (H100/H200 SXM: 989 TFLOP/s). Peak memory: torch.cuda.max_memory_allocated.

    python bench/gpu_bench.py                      # every variant on the GPU (a few minutes: compilation)
    python bench/gpu_bench.py --quick --json out.json
    python bench/gpu_bench.py --device cpu --preset tiny --steps 3          # the CPU smoke test
    python bench/gpu_bench.py --device cpu --preset sam-tiny --steps 3      # a small SAM encoder
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from segpipe.models.trainer_io import TrainingConfig
from segpipe_trainer import accel
from segpipe_trainer.model import (
    PresetSpec,
    Segmenter,
    build_model,
    count_parameters,
    preset_spec,
    sam_vit_base,
)
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

#: A SAM-style encoder small enough for a CPU (2 windowed + 2 global blocks), for smoke tests.
SAM_TINY_KWARGS = {
    "embed_dim": 64,
    "depth": 4,
    "num_heads": 2,
    "global_attn_indexes": [1, 3],
    "window_size": 4,
    "img_size": 128,
    "neck_chans": None,
}


def bf16_peak(device: torch.device) -> tuple[str, float | None]:
    """(device name, dense bf16 peak FLOP/s or None when unknown)."""
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, next((peak for fragment, peak in BF16_PEAKS if fragment in name), None)


def bench_spec(preset: str) -> PresetSpec:
    """A registered preset, or `sam-tiny` (the SAM preset shrunk, random weights)."""
    if preset == "sam-tiny":
        return dataclasses.replace(
            sam_vit_base(), timm_name="samvit_base_patch16", timm_kwargs=SAM_TINY_KWARGS, pretrained=False
        )
    return preset_spec(preset)


@dataclass(frozen=True)
class Variant:
    fast_attention: bool = False
    fused_adamw: bool = False
    compile: bool = False
    auto_batch: bool = False


VARIANTS: dict[str, Variant] = {
    "eager": Variant(),
    "fast-attn": Variant(fast_attention=True),
    "fused-adamw": Variant(fast_attention=True, fused_adamw=True),
    "compile": Variant(compile=True),
    "all": Variant(fast_attention=True, fused_adamw=True, compile=True),
    "all+auto-batch": Variant(fast_attention=True, fused_adamw=True, compile=True, auto_batch=True),
}
CPU_VARIANTS = ("eager", "fast-attn")  # compilation on 2 CPU cores costs minutes; ask for it by name


@dataclass(frozen=True)
class Setup:
    preset: str
    size: int
    batch: int
    warmup: int
    steps: int
    device: torch.device
    cache: Path

    @property
    def bf16(self) -> bool:
        return self.device.type == "cuda"


@dataclass(frozen=True)
class Figures:
    batch: int
    images_per_second: float
    seconds_per_step: float
    first_step_seconds: float
    peak_memory_gib: float | None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(setup: Setup) -> torch.autocast:
    return torch.autocast(device_type=setup.device.type, dtype=torch.bfloat16, enabled=setup.bf16)


def _model(setup: Setup, variant: Variant) -> Segmenter:
    torch.manual_seed(0)
    spec = dataclasses.replace(bench_spec(setup.preset), fast_attention=variant.fast_attention)
    model = build_model(preset=spec, num_classes=2, model_type="instance", in_channels=3, weights="random")
    return model.to(setup.device)


def _inputs(setup: Setup, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """images B x 3 x S x S, classes int64 B x S x S, distance B x S x S, on the device."""
    generator = torch.Generator().manual_seed(0)
    shape = (batch, setup.size, setup.size)
    images = torch.randn(batch, 3, setup.size, setup.size, generator=generator)
    classes = torch.randint(0, 3, shape, generator=generator)
    distance = torch.rand(shape, generator=generator)
    return images.to(setup.device), classes.to(setup.device), distance.to(setup.device)


def _compiled(module: nn.Module, variant: Variant, setup: Setup) -> Callable[..., Any]:
    if not variant.compile:
        return module
    wrapper = accel.compile_module(module, what="benchmark model", cache_dir=setup.cache)
    return wrapper


def _measure(step: Callable[[], None], *, setup: Setup, batch: int, started: float) -> Figures:
    """The first step (timed from `started`), warm-up, then `setup.steps` timed steps."""
    step()
    _sync(setup.device)
    first = time.perf_counter() - started
    for _ in range(setup.warmup):
        step()
    _sync(setup.device)
    if setup.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(setup.device)
    began = time.perf_counter()
    for _ in range(setup.steps):
        step()
    _sync(setup.device)
    seconds = (time.perf_counter() - began) / setup.steps
    memory = torch.cuda.max_memory_allocated(setup.device) / 2**30 if setup.device.type == "cuda" else None
    return Figures(
        batch=batch,
        images_per_second=batch / seconds,
        seconds_per_step=seconds,
        first_step_seconds=first,
        peak_memory_gib=memory,
    )


def _training_step(setup: Setup, variant: Variant, model: Segmenter, batch: int) -> Callable[[], None]:
    config = TrainingConfig(
        model_type="instance", classes=["a", "b"], preset="tiny", epochs=1, tile_size=setup.size, seed=0
    )
    optimizer = build_optimizer(model, config=config)
    if not variant.fused_adamw:  # today's for-each AdamW, whatever build_optimizer now picks
        for group in optimizer.param_groups:
            group["fused"] = None
    loss_fn = SegmentationLoss(class_weights=torch.ones(3), num_classes=2).to(setup.device)
    forward = _compiled(model, variant, setup)
    images, classes, distance = _inputs(setup, batch)

    def step() -> None:
        with _autocast(setup):
            outputs = forward(images)
        loss = loss_fn(outputs, classes, distance)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _inference_step(setup: Setup, variant: Variant, model: Segmenter, batch: int) -> Callable[[], None]:
    model.eval()
    forward = _compiled(model, variant, setup)
    images, _, _ = _inputs(setup, batch)

    def step() -> None:
        with torch.no_grad(), _autocast(setup):
            forward(images)

    return step


def _auto_batch(setup: Setup, model: nn.Module, *, training: bool) -> int:
    """The batch the memory probe picks on a GPU (<= 64); the given batch on a CPU."""
    if setup.device.type != "cuda":
        return setup.batch
    loss_fn = SegmentationLoss(class_weights=torch.ones(3), num_classes=2).to(setup.device)

    def probe(batch: int) -> None:
        images, classes, distance = _inputs(setup, batch)
        with torch.set_grad_enabled(training), _autocast(setup):
            outputs = model(images)
        if training:
            loss_fn(outputs, classes, distance).backward()

    with accel.preserved_state(model):
        extra = accel.optimizer_state_bytes(model) if training else 0
        return accel.probe_batch_capacity(probe, device=setup.device, limit=64, extra_bytes=extra)


def run_variant(setup: Setup, name: str, *, training: bool) -> Figures:
    variant = VARIANTS[name]
    model = _model(setup, variant).train(training)
    batch = _auto_batch(setup, model, training=training) if variant.auto_batch else setup.batch
    _sync(setup.device)
    started = time.perf_counter()
    build = _training_step if training else _inference_step
    figures = _measure(build(setup, variant, model, batch), setup=setup, batch=batch, started=started)
    del model
    if setup.device.type == "cuda":
        torch.cuda.empty_cache()
    return figures


def flops_per_image(setup: Setup, *, training: bool) -> float:
    """FLOPs of one eager step per image (FlopCounterMode), the work every variant is credited with."""
    variant = VARIANTS["eager"]
    model = _model(setup, variant).train(training)
    step = (_training_step if training else _inference_step)(setup, variant, model, setup.batch)
    step()  # optimiser state exists before counting
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    del model
    return float(counter.get_total_flops()) / setup.batch


def _row(name: str, figures: Figures, *, flops: float, peak: float | None) -> dict[str, Any]:
    achieved = flops * figures.images_per_second
    return {
        "variant": name,
        "batch": figures.batch,
        "images_per_s": round(figures.images_per_second, 2),
        "ms_per_step": round(1000 * figures.seconds_per_step, 2),
        "tflop_per_s": round(achieved / 1e12, 3),
        "mfu_percent": round(100 * achieved / peak, 2) if peak else None,
        "peak_gib": round(figures.peak_memory_gib, 2) if figures.peak_memory_gib is not None else None,
        "first_step_s": round(figures.first_step_seconds, 2),
    }


COLUMNS = (
    ("variant", "<16"),
    ("batch", ">5"),
    ("images_per_s", ">12"),
    ("ms_per_step", ">11"),
    ("tflop_per_s", ">11"),
    ("mfu_percent", ">11"),
    ("peak_gib", ">8"),
    ("first_step_s", ">12"),
)


def _line(row: dict[str, Any]) -> str:
    return " ".join(f"{'n/a' if row[key] is None else row[key]:{fmt}}" for key, fmt in COLUMNS)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 warm-up and 5 timed steps")
    parser.add_argument("--preset", default="sam-vit-base", help="a preset name, or sam-tiny")
    parser.add_argument("--size", type=int, help="tile edge (default 512 on a GPU, 64 on a CPU)")
    parser.add_argument("--batch", type=int, help="batch (default 8 on a GPU, 2 on a CPU)")
    parser.add_argument("--warmup", type=int, help="warm-up steps (default 5)")
    parser.add_argument("--steps", type=int, help="timed steps (default 20)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--variants", help=f"comma-separated, of {', '.join(VARIANTS)} (default: all on a GPU)"
    )
    parser.add_argument("--phases", default="training,inference")
    parser.add_argument("--cache", type=Path, help="inductor cache folder (default: a fresh temporary one)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Print the tables (and write --json); returns the results. `argv`: command-line options."""
    args = _parser().parse_args(list(argv or []))
    logging.basicConfig(level=logging.WARNING)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    warmup, steps = (2, 5) if args.quick else (5, 20)
    names = args.variants.split(",") if args.variants else list(VARIANTS if on_gpu else CPU_VARIANTS)
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants: {', '.join(unknown)}")
    setup = Setup(
        preset=args.preset,
        size=args.size or (512 if on_gpu else 64),
        batch=args.batch or (8 if on_gpu else 2),
        warmup=args.warmup if args.warmup is not None else warmup,
        steps=args.steps or steps,
        device=device,
        cache=args.cache or Path(tempfile.mkdtemp(prefix="segpipe-inductor-")),
    )
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    name, peak = bf16_peak(device)
    parameters = count_parameters(_model(setup, Variant()))
    header = {
        "device": name,
        "bf16_peak_tflops": peak / 1e12 if peak else None,
        "torch": torch.__version__,
        "preset": setup.preset,
        "parameters_m": round(parameters / 1e6, 2),
        "size": setup.size,
        "batch": setup.batch,
        "precision": "bf16 autocast" if setup.bf16 else "fp32",
        "warmup": setup.warmup,
        "steps": setup.steps,
    }
    print(json.dumps(header), flush=True)
    results: dict[str, Any] = {**header, "phases": {}}
    for phase in args.phases.split(","):
        training = phase == "training"
        flops = flops_per_image(setup, training=training)
        print(f"\n{phase}: {flops * setup.batch / 1e12:.4f} TFLOP per eager step of {setup.batch}")
        print(_line({key: key for key, _ in COLUMNS}), flush=True)
        rows = []
        for variant in names:
            row = _row(variant, run_variant(setup, variant, training=training), flops=flops, peak=peak)
            rows.append(row)
            print(_line(row), flush=True)
        results["phases"][phase] = {"flops_per_image": flops, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
