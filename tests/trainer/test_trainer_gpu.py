"""CUDA-only paths: bf16 autocast training, GPU inference, a whole job with data-loader workers."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from segpipe.models.trainer_io import Evaluation, TrainingConfig
from segpipe_trainer import accel
from segpipe_trainer.data import Sample, StepSampler, TileDataset
from segpipe_trainer.distributed import Runtime
from segpipe_trainer.fast_attention import install_fast_attention
from segpipe_trainer.infer import autocast, sliding_window
from segpipe_trainer.job import data_loader_workers, run_job
from segpipe_trainer.model import build_model
from segpipe_trainer.paths import MlPaths
from segpipe_trainer.train import (
    SegmentationLoss,
    StopSignal,
    build_optimizer,
    build_scheduler,
    train_one_epoch,
)
from tests.trainer.tiny_model import synthetic_sample
from tests.trainer.trainer_testkit import DatasetSpec, hyperparameters, make_ml_root

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _runtime() -> Runtime:
    return Runtime(device=torch.device("cuda", 0))


def _sample(seed: int) -> Sample:
    return synthetic_sample(seed=seed, size=(96, 96), objects=4)


def test_autocast_runs_the_encoder_and_decoder_in_bf16_on_cuda() -> None:
    runtime = _runtime()
    model = build_model(preset="tiny", num_classes=2, model_type="instance", in_channels=1).to(runtime.device)
    seen: dict[str, torch.dtype] = {}

    def recorder(name: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def record(module: nn.Module, args: object, out: torch.Tensor) -> None:
            seen.setdefault(name, out.dtype)

        return record

    model.encoder.vit.blocks[0].attn.qkv.register_forward_hook(recorder("attention"))
    model.decoder.fusion_blocks[0].project.register_forward_hook(recorder("decoder"))

    with autocast(device=runtime.device, bf16=runtime.bf16):
        outputs = model(torch.randn(2, 1, 64, 64, device=runtime.device))

    assert runtime.bf16
    assert seen == {"attention": torch.bfloat16, "decoder": torch.bfloat16}
    assert torch.isfinite(outputs.float()).all()


def test_bf16_training_steps_lower_the_loss() -> None:
    runtime = _runtime()
    torch.manual_seed(0)
    model = build_model(preset="tiny", num_classes=2, model_type="instance", in_channels=1).to(runtime.device)
    config = TrainingConfig.from_hyperparameters(hyperparameters(learning_rate=0.002))
    optimizer = build_optimizer(model, config=config, encoder_pretrained=False)
    scheduler = build_scheduler(optimizer, total_steps=60, warmup_fraction=0.05)
    loss_fn = SegmentationLoss(class_weights=torch.ones(3), num_classes=2).to(runtime.device)
    dataset = TileDataset(
        samples=[_sample(1), _sample(2)], tile_size=64, in_channels=1, length=60 * 8, seed=0
    )
    losses = []
    for epoch in range(3):
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=8, sampler=StepSampler(steps=20 * (epoch + 1), batch_size=8, start=20 * epoch)
        )
        result = train_one_epoch(
            model,
            loader=loader,
            optimizer=optimizer,
            scheduler=scheduler,
            loss_fn=loss_fn,
            runtime=runtime,
            stop=StopSignal(),
        )
        losses.append(result.loss_sum / 20)

    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]


def test_gpu_inference_matches_the_cpu() -> None:
    torch.manual_seed(0)
    model = build_model(preset="tiny", num_classes=2, model_type="instance", in_channels=1).eval()
    image = _sample(3).image

    on_cpu = sliding_window(model, image, tile_size=64, device=torch.device("cpu"))
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # TF32 convolutions differ by ~1e-2
        on_gpu = sliding_window(model.cuda(), image, tile_size=64, device=torch.device("cuda"), bf16=False)
    in_bf16 = sliding_window(model, image, tile_size=64, device=torch.device("cuda"), bf16=True)

    torch.testing.assert_close(on_gpu, on_cpu, rtol=2e-3, atol=2e-3)
    assert (in_bf16.argmax(0)[:3] == on_cpu.argmax(0)[:3]).float().mean() > 0.95


def test_a_whole_job_on_the_gpu_with_loader_workers(tmp_path: Path) -> None:
    root = make_ml_root(
        tmp_path,
        params=hyperparameters(epochs=2, steps_per_epoch=5, batch_size=8, validation_fraction=0.3),
        train=DatasetSpec(images=4, size=(96, 96), objects=4),
        test=[DatasetSpec(images=1, size=(200, 90), seed=7)],
    )
    runtime = _runtime()
    config = TrainingConfig.from_hyperparameters(
        json.loads((root / "input/config/hyperparameters.json").read_text())
    )

    outcome = run_job(paths=MlPaths(root=root), config=config, runtime=runtime, stop=StopSignal())

    assert not outcome.interrupted
    assert data_loader_workers(runtime) >= 1
    evaluation = Evaluation.model_validate_json((root / "output/data/evaluation.json").read_text())
    assert evaluation.selection is not None and evaluation.test is not None
    # Refit or not, the final model trained the configured 2 epochs: a refit (few validation groups)
    # takes the configured count unless early stopping ended the first phase, and patience 10
    # cannot end a 2-epoch one.
    assert evaluation.epochs_trained == 2
    assert json.loads((root / "output/data/config.json").read_text())["device"].startswith("cuda")


# --- Issue 12: fast attention, fused AdamW, batch probe, compile, device tiles --------------------


def _sam_pair(mode: str) -> tuple[nn.Module, nn.Module]:
    from tests.trainer.test_fast_attention import _small_sam

    reference = _small_sam().cuda()
    fast = copy.deepcopy(reference)
    install_fast_attention(fast, mode=mode)  # type: ignore[arg-type]
    return reference, fast


@pytest.mark.parametrize(("mode", "backend"), [("fold", "flash"), ("mask", "efficient")])
def test_fast_attention_runs_on_the_fused_kernel_and_matches_timm_in_bf16(mode: str, backend: str) -> None:
    reference, fast = _sam_pair(mode)
    images = torch.randn(2, 3, 96, 112, device="cuda")
    kernel = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION}[backend]

    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        expected = reference.forward_intermediates(images, indices=[3], intermediates_only=True)[0]
        with sdpa_kernel([kernel]):  # raises when the kernel cannot take these inputs
            got = fast.forward_intermediates(images, indices=[3], intermediates_only=True)[0]
        with sdpa_kernel([kernel]), pytest.raises(RuntimeError):  # timm's 3-D call never could
            reference.forward_intermediates(images, indices=[3], intermediates_only=True)
    expected.float().square().mean().backward()
    got.float().square().mean().backward()

    torch.testing.assert_close(got.float(), expected.float(), rtol=3e-2, atol=3e-2)
    for (name, left), right in zip(reference.named_parameters(), fast.parameters(), strict=True):
        if left.grad is not None:
            scale = left.grad.abs().max().clamp(min=1e-6)
            assert (right.grad - left.grad).abs().max() / scale < 6e-2, name


def test_adamw_is_fused_on_cuda() -> None:
    model = build_model(preset="tiny", num_classes=2, model_type="instance", in_channels=1).cuda()
    config = TrainingConfig.from_hyperparameters(hyperparameters())

    assert build_optimizer(model, config=config, encoder_pretrained=False).defaults["fused"] is True


def test_the_batch_probe_finds_a_batch_that_fits_and_leaves_the_model_as_it_was() -> None:
    runtime = _runtime()
    model = build_model(preset="tiny", num_classes=2, model_type="instance", in_channels=1).cuda().train()
    before = {name: b.clone() for name, b in model.named_buffers()}

    def step(batch: int) -> None:
        with autocast(device=runtime.device, bf16=True):
            model(torch.randn(batch, 1, 128, 128, device="cuda")).float().mean().backward()

    with accel.preserved_state(model):
        fits = accel.probe_batch_capacity(step, device=runtime.device, limit=48)

    assert 4 <= fits <= 48
    assert all(torch.equal(b, before[name]) for name, b in model.named_buffers())
    assert accel.BatchPlan.for_request(96, fits=fits).effective == 96


def test_the_compiled_training_step_caches_its_kernels_in_the_given_folder(tmp_path: Path) -> None:
    model = build_model(preset="tiny", num_classes=2, model_type="instance", in_channels=1).cuda().train()
    images = torch.randn(2, 1, 64, 64, device="cuda")

    def warmup(module: nn.Module) -> None:
        with autocast(device=torch.device("cuda"), bf16=True):
            module(images).float().mean().backward()

    compiled = accel.compile_module(model, what="training model", cache_dir=tmp_path / "cache", warmup=warmup)

    assert compiled.is_compiled
    assert any((tmp_path / "cache").rglob("*"))
    with torch.no_grad(), autocast(device=torch.device("cuda"), bf16=True):
        torch.testing.assert_close(compiled(images).float(), model(images).float(), rtol=5e-2, atol=5e-2)


def test_compact_tiles_are_finished_on_the_gpu() -> None:
    dataset = TileDataset(
        samples=[_sample(1), _sample(2)], tile_size=64, in_channels=1, length=4, seed=0, compact=True
    )
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4, pin_memory=True)))

    first = accel.device_batch(batch, device=torch.device("cuda"))
    again = accel.device_batch(batch, device=torch.device("cuda"))

    assert first.images.is_cuda and first.images.dtype == torch.float32 and first.classes.dtype == torch.int64
    assert torch.equal(first.images, again.images)


def test_200_optimised_bf16_steps_follow_the_eager_fp32_loss_curve() -> None:
    """bf16, compact tiles jittered on the GPU, two micro-batches per step against fp32 eager."""
    curves = []
    for optimised in (False, True):
        torch.manual_seed(0)
        model = build_model(preset="tiny", num_classes=2, model_type="instance", in_channels=1).cuda()
        config = TrainingConfig.from_hyperparameters(hyperparameters(learning_rate=0.002))
        optimizer = build_optimizer(model, config=config, encoder_pretrained=False)
        scheduler = build_scheduler(optimizer, total_steps=200, warmup_fraction=0.05)
        loss_fn = SegmentationLoss(class_weights=torch.ones(3), num_classes=2).cuda()
        dataset = TileDataset(
            samples=[_sample(1), _sample(2)],
            tile_size=64,
            in_channels=1,
            length=200 * 8,
            seed=0,
            compact=optimised,
        )
        runtime = _runtime() if optimised else _Fp32Runtime(device=torch.device("cuda", 0))
        curve = []
        for block in range(10):
            sampler = StepSampler(steps=20 * (block + 1), batch_size=8, start=20 * block)
            result = train_one_epoch(
                model,
                loader=torch.utils.data.DataLoader(dataset, batch_size=8, sampler=sampler),
                optimizer=optimizer,
                scheduler=scheduler,
                loss_fn=loss_fn,
                runtime=runtime,
                stop=StopSignal(),
                accumulation=2 if optimised else 1,
            )
            curve.append(result.loss_sum / 20)
        curves.append(np.asarray(curve))
    eager, fast = curves

    relative = np.abs(fast - eager) / eager
    assert fast[-3:].mean() < 0.6 * fast[0] and eager[-3:].mean() < 0.6 * eager[0]
    assert np.median(relative) < 0.1 and relative.max() < 0.25


@dataclasses.dataclass(frozen=True)
class _Fp32Runtime(Runtime):
    """A CUDA runtime without bf16 autocast: the eager fp32 reference."""

    @property
    def bf16(self) -> bool:
        return False
