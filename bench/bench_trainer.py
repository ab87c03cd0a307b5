"""CPU training-step time of the `tiny` preset (what local runs and the test suite train with).

Measured: one optimiser step (forward, loss, backward, AdamW) of an instance model with two
classes on random B x 1 x T x T tiles, batch 8, at 128 and 256 pixels; torch limited to 2 threads;
the median over the timed steps after warm-up steps. Run: `python -m bench.bench_trainer`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence

import torch

from segpipe.models.trainer_io import TrainingConfig
from segpipe_trainer.model import build_model, count_parameters
from segpipe_trainer.train import SegmentationLoss, build_optimizer


def step_seconds(*, size: int, batch: int, warmup: int, steps: int) -> list[float]:
    """Seconds of each timed training step of `tiny` on batch x 1 x size x size tiles."""
    torch.manual_seed(0)
    model = build_model(preset="tiny", num_classes=2, model_type="instance", in_channels=1)
    config = TrainingConfig(
        model_type="instance", classes=["a", "b"], preset="tiny", epochs=1, tile_size=size, seed=0
    )
    optimizer = build_optimizer(model, config=config, encoder_pretrained=False)
    loss_fn = SegmentationLoss(class_weights=torch.ones(3), num_classes=2)
    images = torch.randn(batch, 1, size, size)
    classes = torch.randint(0, 3, (batch, size, size))
    distance = torch.rand(batch, size, size)
    model.train()
    times = []
    for step in range(warmup + steps):
        started = time.perf_counter()
        loss = loss_fn(model(images), classes, distance)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= warmup:
            times.append(time.perf_counter() - started)
    return times


def main(argv: Sequence[str] | None = None) -> None:
    """Print the table; `argv` are command-line options (none: the defaults, as `make bench` runs it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    args = parser.parse_args(list(argv or []))
    torch.set_num_threads(args.threads)
    params = count_parameters(build_model(preset="tiny", num_classes=2, model_type="instance", in_channels=1))
    print(f"tiny preset: {params / 1e6:.2f} M parameters; torch {torch.__version__}, {args.threads} threads")
    print(f"median of {args.steps} steps after {args.warmup} warm-up steps, batch {args.batch}")
    print(f"{'tile':>6} {'s/step':>8} {'min':>8} {'max':>8} {'tiles/s':>8}")
    for size in args.sizes:
        times = step_seconds(size=size, batch=args.batch, warmup=args.warmup, steps=args.steps)
        median = statistics.median(times)
        print(f"{size:>6} {median:>8.3f} {min(times):>8.3f} {max(times):>8.3f} {args.batch / median:>8.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
