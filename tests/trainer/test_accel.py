"""GPU-efficiency pieces that run on the CPU: batch plans, accumulation, compile fallback, device tiles."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from segpipe_trainer import accel
from segpipe_trainer.accel import AccelOptions, BatchPlan
from segpipe_trainer.data import Augmentation, Sample, StepSampler, TileDataset
from segpipe_trainer.distributed import Runtime
from segpipe_trainer.infer import accelerated, inference_batch_size, sliding_window
from segpipe_trainer.model import build_model
from segpipe_trainer.train import SegmentationLoss, _accumulate_gradients, build_optimizer
from tests.trainer.tiny_model import cpu_predictor, synthetic_sample


def _sample(seed: int) -> Sample:
    return synthetic_sample(seed=seed, size=(80, 80), objects=3)


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return build_model(preset="tiny", num_classes=2, model_type="instance", in_channels=1)


# --- Batch plans --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "fits", "micro", "parts"),
    [(8, 100, 8, 1), (8, 8, 8, 1), (8, 3, 2, 4), (12, 5, 4, 3), (7, 4, 1, 7), (6, 0, 1, 6)],
)
def test_a_plan_keeps_the_requested_batch_in_equal_micro_batches(
    requested: int, fits: int, micro: int, parts: int
) -> None:
    plan = BatchPlan.for_request(requested, fits=fits)

    assert (plan.micro_batch, plan.accumulation) == (micro, parts)
    assert plan.effective == requested


def test_the_memory_probe_is_a_no_op_on_the_cpu() -> None:
    calls: list[int] = []

    fits = accel.probe_batch_capacity(calls.append, device=torch.device("cpu"), limit=12)

    assert fits == 12 and calls == []
    assert (
        inference_batch_size(_tiny(), tile_size=64, in_channels=1, device=torch.device("cpu"), bf16=False)
        == 4
    )


class FakeGpuMemory:
    """torch.cuda's allocator statistics for a step that needs fixed + batch x per_tile bytes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, total: int, fixed: int, per_tile: int) -> None:
        self.total, self.fixed, self.per_tile, self.peak, self.batches = total, fixed, per_tile, 0, []
        properties = type("Properties", (), {"total_memory": total})()
        for name, value in {
            "synchronize": lambda device=None: None,
            "empty_cache": lambda: None,
            "reset_peak_memory_stats": lambda device=None: None,
            "max_memory_allocated": lambda device=None: self.peak,
            "get_device_properties": lambda device=None: properties,
        }.items():
            monkeypatch.setattr(torch.cuda, name, value)

    def step(self, batch: int) -> None:
        self.batches.append(batch)
        self.peak = self.fixed + batch * self.per_tile
        if self.peak > self.total:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")


def test_the_probe_extrapolates_from_two_batches_and_keeps_the_margin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gib = 2**30
    memory = FakeGpuMemory(monkeypatch, total=100 * gib, fixed=10 * gib, per_tile=2 * gib)

    fits = accel.probe_batch_capacity(memory.step, device=torch.device("cuda"), limit=64, margin=0.15)

    assert fits == 37  # (85 GiB - 10 GiB) / 2 GiB per tile
    assert memory.batches == [2, 4, 37]
    assert accel.probe_batch_capacity(memory.step, device=torch.device("cuda"), limit=8) == 8
    optimizer_state = 20 * gib
    assert (
        accel.probe_batch_capacity(
            memory.step, device=torch.device("cuda"), limit=64, extra_bytes=optimizer_state
        )
        == 27
    )


def test_the_probe_halves_a_batch_that_does_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    gib = 2**30
    memory = FakeGpuMemory(monkeypatch, total=10 * gib, fixed=9 * gib, per_tile=gib // 4)

    assert accel.probe_batch_capacity(memory.step, device=torch.device("cuda"), limit=16, margin=0.15) == 1
    memory.batches.clear()
    assert accel.probe_batch_capacity(memory.step, device=torch.device("cuda"), limit=2, margin=0.0) == 2
    assert memory.batches == [2]


def test_probe_steps_leave_batchnorm_statistics_rng_and_gradients_as_they_were() -> None:
    model = _tiny().train()
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    rng = torch.get_rng_state()

    with accel.preserved_state(model):
        model(torch.randn(2, 1, 64, 64)).sum().backward()
        torch.rand(3)

    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, before[name]), name
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in model.parameters())


# --- Gradient accumulation ----------------------------------------------------------------------


@pytest.mark.parametrize("parts", [2, 4])
def test_accumulated_micro_batches_give_the_gradients_of_one_batch(parts: int) -> None:
    model = _tiny().train()
    for layer in model.modules():  # BatchNorm normalises per micro-batch, dropout draws: hold both still
        if isinstance(layer, nn.BatchNorm2d | nn.Dropout):
            layer.eval()
    loss_fn = SegmentationLoss(class_weights=torch.ones(3), num_classes=2)
    generator = torch.Generator().manual_seed(3)
    tiles = accel.DeviceBatch(
        images=torch.randn(4, 1, 64, 64, generator=generator),
        classes=torch.randint(0, 3, (4, 64, 64), generator=generator),
        distance=torch.rand(4, 64, 64, generator=generator),
    )

    def gradients(number: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        loss = _accumulate_gradients(model, tiles=tiles, loss_fn=loss_fn, runtime=Runtime(), parts=number)
        return loss, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    whole_loss, whole = gradients(1)
    split_loss, split = gradients(parts)

    torch.testing.assert_close(split_loss, whole_loss, rtol=1e-5, atol=1e-6)
    assert whole.keys() == split.keys() and len(whole) > 20
    for name, grad in whole.items():  # fp32 sums in another order: about 1e-6 of the largest entry
        assert (split[name] - grad).abs().max() <= 2e-5 * grad.abs().max(), name


def test_adamw_is_not_fused_on_the_cpu() -> None:
    from segpipe.models.trainer_io import TrainingConfig

    config = TrainingConfig(
        model_type="instance", classes=["a", "b"], preset="tiny", epochs=1, tile_size=64, seed=0
    )
    optimizer = build_optimizer(_tiny(), config=config)

    assert not optimizer.defaults["fused"]


# --- torch.compile: cache and logged fallback ---------------------------------------------------


def _broken_backend(graph: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
    raise RuntimeError("forced compiler failure")


def test_a_compile_failure_in_warm_up_is_logged_and_eager_is_used(
    caplog: pytest.LogCaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "unset")
    model = nn.Linear(4, 2)
    inputs = torch.randn(3, 4)

    def warmup(module: nn.Module) -> None:
        module(inputs).sum().backward()

    with caplog.at_level(logging.WARNING, logger="segpipe_trainer.accel"):
        wrapper = accel.compile_module(
            model, what="test model", cache_dir=tmp_path / "cache", warmup=warmup, backend=_broken_backend
        )

    assert not wrapper.is_compiled
    assert any(r.message.startswith("compile_failed:") and "forced" in r.message for r in caplog.records)
    torch.testing.assert_close(wrapper(inputs), model(inputs))
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache")
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "cache" / "triton")


def test_a_compile_failure_at_the_first_call_is_logged_and_that_call_runs_eager(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = nn.Linear(4, 2)
    wrapper = accel.compile_module(model, what="inference model", cache_dir=None, backend=_broken_backend)
    inputs = torch.randn(3, 4)

    with caplog.at_level(logging.WARNING, logger="segpipe_trainer.accel"):
        out = wrapper(inputs)

    torch.testing.assert_close(out, model(inputs))
    assert not wrapper.is_compiled
    assert [r.message.split(":")[0] for r in caplog.records] == ["compile_failed"]


def test_a_working_compile_is_kept_and_shares_the_parameters() -> None:
    model = nn.Linear(4, 2)
    wrapper = accel.compile_module(model, what="test model", cache_dir=None, backend="eager")

    out = wrapper(torch.ones(1, 4))

    assert wrapper.is_compiled
    assert {id(p) for p in wrapper.parameters()} == {id(p) for p in model.parameters()}
    assert accel.compiled_or_eager(wrapper) is model
    torch.testing.assert_close(out, model(torch.ones(1, 4)))


def test_options_compile_on_cuda_only_unless_told_and_read_the_environment() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")

    assert AccelOptions().compiles(cuda) and not AccelOptions().compiles(cpu)
    assert AccelOptions(compile="on").compiles(cpu) and not AccelOptions(compile="off").compiles(cuda)
    assert AccelOptions().augments_on_device(cuda) and not AccelOptions().augments_on_device(cpu)
    options = AccelOptions.from_environment(
        {"SEGPIPE_COMPILE": "off", "SEGPIPE_CHANNELS_LAST": "1", "SEGPIPE_DEVICE_AUGMENT": "1"}
    )
    assert options == AccelOptions(compile="off", channels_last=True, device_augment=True)
    assert AccelOptions.from_environment({"SEGPIPE_COMPILE": "bogus"}).compile == "auto"


def test_channels_last_applies_to_the_decoder_only() -> None:
    model = build_model(preset="tiny", num_classes=2, model_type="instance", in_channels=3)

    accel.channels_last_decoder(model)

    convolution = next(
        m for m in model.decoder.modules() if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1
    )
    assert convolution.weight.is_contiguous(memory_format=torch.channels_last)
    patch = model.encoder.vit.patch_embed.proj.weight
    assert patch.is_contiguous() and not patch.is_contiguous(memory_format=torch.channels_last)


# --- Tiles finished on the device ---------------------------------------------------------------


def _tiles(*, compact: bool, noise: float) -> dict[str, torch.Tensor]:
    dataset = TileDataset(
        samples=[_sample(1), _sample(2)],
        tile_size=64,
        in_channels=1,
        length=8,
        seed=5,
        compact=compact,
        augmentation=Augmentation(noise_std=noise),
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, sampler=StepSampler(steps=1, batch_size=4))
    return next(iter(loader))


def test_compact_tiles_are_small_and_widen_to_the_plain_tiles() -> None:
    compact, plain = _tiles(compact=True, noise=0.0), _tiles(compact=False, noise=0.0)

    assert (compact["image"].dtype, compact["classes"].dtype, compact["distance"].dtype) == (
        torch.float16,
        torch.uint8,
        torch.float16,
    )
    widened = accel.device_batch(compact, device=torch.device("cpu"))
    moved = accel.device_batch(plain, device=torch.device("cpu"))
    assert torch.equal(widened.classes, moved.classes) and widened.classes.dtype == torch.int64
    torch.testing.assert_close(widened.images, moved.images, rtol=2e-3, atol=2e-3)  # float16 storage
    torch.testing.assert_close(widened.distance, moved.distance, rtol=1e-3, atol=1e-3)


def test_device_noise_is_fixed_by_each_tiles_seed() -> None:
    first, again = _tiles(compact=True, noise=0.05), _tiles(compact=True, noise=0.05)
    clean = accel.device_batch(_tiles(compact=True, noise=0.0), device=torch.device("cpu")).images

    noisy = accel.device_batch(first, device=torch.device("cpu")).images
    repeat = accel.device_batch(again, device=torch.device("cpu")).images

    assert torch.equal(noisy, repeat)
    residual = noisy - clean
    assert abs(float(residual.std()) - 0.05) < 0.005 and abs(float(residual.mean())) < 0.005
    assert not torch.equal(residual[0], residual[1])


def test_loader_workers_share_the_usable_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(48)), raising=False)
    cuda = torch.device("cuda")

    assert accel.loader_workers(device=torch.device("cpu"), local_world=1) == 0
    assert accel.loader_workers(device=cuda, local_world=8) == 5
    assert accel.loader_workers(device=cuda, local_world=1) == 16
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert accel.loader_workers(device=cuda, local_world=4) == 1


# --- Inference ----------------------------------------------------------------------------------


def test_a_fixed_batch_pads_the_last_windows_without_changing_the_outputs() -> None:
    model = _tiny().eval()
    image = _sample(4).image
    shapes: list[int] = []
    model.register_forward_pre_hook(lambda module, args: shapes.append(args[0].shape[0]))

    free = sliding_window(model, image, tile_size=64, device=torch.device("cpu"), batch_size=3)
    free_shapes, shapes[:] = list(shapes), []
    fixed = sliding_window(
        model, image, tile_size=64, device=torch.device("cpu"), batch_size=3, fixed_batch=True
    )

    assert free_shapes == [3, 1] and shapes == [3, 3]
    torch.testing.assert_close(fixed, free, rtol=1e-5, atol=1e-5)


def test_an_accelerated_predictor_runs_its_compiled_model_on_fixed_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[int] = []

    def compiler(module: nn.Module, **options: Any) -> Callable[..., Any]:
        def run(tiles: torch.Tensor) -> torch.Tensor:
            seen.append(tiles.shape[0])
            return module(tiles)

        return run

    monkeypatch.setattr(torch, "compile", compiler)
    model = _tiny()
    plain = cpu_predictor(model)
    image = _sample(4).image

    fast = accelerated(plain, compile_model=True)

    assert accelerated(plain, compile_model=False).runner is None
    assert fast.batch_size == 4 and fast.runner is not None and fast.model is model
    torch.testing.assert_close(fast.outputs(image), plain.outputs(image), rtol=1e-5, atol=1e-5)
    assert seen == [4]  # four windows of an 80 x 80 image, one fixed batch
