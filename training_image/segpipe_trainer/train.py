"""The training loop: optimiser, schedule, loss, checkpoints, SIGTERM, early stopping, DDP.

Every source of randomness is fixed by the seed: item i of epoch e is drawn from (seed, e, i), the
torch generator is reseeded at each epoch start and saved in mid-epoch checkpoints, so a resumed
run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import random
import signal
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from segpipe.models.trainer_io import Progress, SplitEvaluation, TrainingConfig
from segpipe_trainer import accel, atomic
from segpipe_trainer.averaging import WeightAverage
from segpipe_trainer.data import Augmentation, Sample, StepSampler, TileDataset
from segpipe_trainer.distributed import Runtime
from segpipe_trainer.evaluation import ImagePrediction, evaluate_images
from segpipe_trainer.infer import Predictor, autocast
from segpipe_trainer.model import FLOW_SCALE, Segmenter, split_outputs

logger = logging.getLogger(__name__)
#: Lines SageMaker's metric definitions match (`epoch=3 train_loss=0.123456`); no prefix added.
metrics_logger = logging.getLogger("segpipe_trainer.metrics")

CHECKPOINT_FILE = "last.pt"
BEST_WEIGHTS_FILE = "best.safetensors"
CHECKPOINT_FORMAT = 1
#: Weight of the distance-map loss against the class cross-entropy (instance models).
DISTANCE_WEIGHT = 3.0
#: Weight of the flow head's mean squared error (on FLOW_SCALE x unit flows) against the cross-entropy.
FLOW_WEIGHT = 0.5


# --- Stop requests -----------------------------------------------------------------------------


class StopSignal:
    """Records SIGTERM (a spot interruption or StopTrainingJob) so the loop can checkpoint and leave."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        """Handle SIGTERM in this (main) thread from now on."""
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        logger.warning("Received signal %d: saving a checkpoint after the current step", signum)
        self.requested = True


# --- Optimiser, schedule, loss -----------------------------------------------------------------


def _no_decay(name: str, parameter: nn.Parameter) -> bool:
    return parameter.ndim <= 1 or name.endswith(("pos_embed", "cls_token", "reg_token", ".bias"))


def build_optimizer(
    model: Segmenter, *, config: TrainingConfig, encoder_pretrained: bool = True
) -> torch.optim.AdamW:
    """AdamW; no weight decay on norms, biases and embeddings; the fused kernel when on CUDA.

    A pretrained encoder learns at encoder_lr_scale x the peak rate; a randomly initialised one
    (the tiny preset) has nothing to preserve and learns at the peak rate like the decoder.
    """
    encoder_scale = config.encoder_lr_scale if encoder_pretrained else 1.0
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            key = (name.startswith("encoder."), _no_decay(name, parameter))
            groups.setdefault(key, []).append(parameter)
    param_groups = [
        {
            "params": params,
            "lr": config.peak_learning_rate * (encoder_scale if is_encoder else 1.0),
            "weight_decay": 0.0 if no_decay else config.weight_decay,
        }
        for (is_encoder, no_decay), params in sorted(groups.items())
    ]
    on_cuda = all(p.is_cuda for params in groups.values() for p in params)
    return torch.optim.AdamW(param_groups, betas=(0.9, 0.999), fused=True if on_cuda else None)


@dataclass(frozen=True)
class WarmupCosine:
    """Learning-rate factor at a step: linear warm-up to 1, then cosine decay to `floor`."""

    total_steps: int
    warmup_steps: int
    floor: float = 0.01

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_fraction: float
) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = math.ceil(warmup_fraction * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupCosine(total_steps=total_steps, warmup_steps=warmup)
    )


def segmentation_loss(
    outputs: torch.Tensor,
    classes: torch.Tensor,
    distance: torch.Tensor,
    *,
    class_weights: torch.Tensor,
    num_classes: int,
    distance_weight: float = DISTANCE_WEIGHT,
) -> torch.Tensor:
    """Class-weighted cross-entropy on the K+1 logits, plus BCE on the distance map (instance models).

    The distance term is weighted up: its per-pixel values are small next to the cross-entropy's,
    yet the seeds that split touching objects come from it (tripling it took synthetic touching
    pairs from F1 0.82 to 0.90 at equal steps). A flow head's term is Cellpose's: half the mean
    squared error of the predicted flows against FLOW_SCALE x the unit target flows.

    outputs B x O x H x W, classes int64 B x H x W, distance float B x H x W (distance head) or
    B x 2 x H x W (flow head: the unit flows), ignored for semantic models -> scalar.
    """
    logits, head = split_outputs(outputs.float(), num_classes=num_classes)
    loss = functional.cross_entropy(logits, classes, weight=class_weights.to(logits.device))
    if head is not None and head.ndim == 4:
        loss = loss + FLOW_WEIGHT * functional.mse_loss(head, FLOW_SCALE * distance.float())
    elif head is not None:
        loss = loss + distance_weight * functional.binary_cross_entropy_with_logits(head, distance.float())
    return loss


class SegmentationLoss(nn.Module):
    """`segmentation_loss` with its class weights (float32 [K+1]) kept as a buffer."""

    class_weights: torch.Tensor

    def __init__(
        self, *, class_weights: torch.Tensor, num_classes: int, distance_weight: float = DISTANCE_WEIGHT
    ) -> None:
        super().__init__()
        self.register_buffer("class_weights", class_weights.float())
        self.num_classes = num_classes
        self.distance_weight = distance_weight

    def forward(self, outputs: torch.Tensor, classes: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        return segmentation_loss(
            outputs,
            classes,
            distance,
            class_weights=self.class_weights,
            num_classes=self.num_classes,
            distance_weight=self.distance_weight,
        )


# --- State and checkpoints ---------------------------------------------------------------------


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # steps of the current epoch done (non-zero only after an interruption)
    loss_sum: float = 0.0  # summed step losses of the current epoch
    best_score: float | None = None
    best_epoch: int | None = None
    stale_epochs: int = 0
    finished: bool = False
    history: list[dict[str, float | None]] = field(default_factory=list)


@dataclass(frozen=True)
class Fingerprint:
    """What must match for a checkpoint to be resumed."""

    preset: str
    model_type: str
    classes: tuple[str, ...]
    tile_size: int
    seed: int
    in_channels: int
    world: int
    instance_head: str = "distance"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "classes": list(self.classes)}


def save_checkpoint(  # long: keyword-only, the weight average optional
    path: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: TrainState,
    fingerprint: Fingerprint,
    average: WeightAverage | None = None,
) -> None:
    """Write a resumable checkpoint atomically (a temporary file renamed over the old one)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "fingerprint": fingerprint.as_dict(),
        "state": asdict(state),
        "model": _unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "average": average.state_dict() if average else None,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    with atomic.atomic_path(path) as temporary:
        torch.save(payload, temporary)


def load_checkpoint(  # long: keyword-only, the weight average optional
    path: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    fingerprint: Fingerprint,
    average: WeightAverage | None = None,
) -> TrainState | None:
    """Restore a checkpoint written by `save_checkpoint`; None when there is none or it belongs elsewhere."""
    if not path.is_file():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT or payload.get("fingerprint") != fingerprint.as_dict():
        logger.warning("Ignoring checkpoint %s: it was written for another configuration", path)
        return None
    if (average is None) != (payload.get("average") is None):
        logger.warning("Ignoring checkpoint %s: it was written with another weight-averaging setting", path)
        return None
    _unwrap(model).load_state_dict(payload["model"])
    if average is not None:
        average.load_state_dict(payload["average"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["torch_rng"])
    if payload["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    state = TrainState(**payload["state"])
    logger.info(
        "Resuming from %s: %d epochs done, step %d of the next", path.name, state.epoch, state.step_in_epoch
    )
    return state


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def save_weights(model: nn.Module, path: Path) -> None:
    """The model's weights as safetensors (atomically)."""
    tensors = {key: value.detach().cpu().contiguous() for key, value in _unwrap(model).state_dict().items()}
    with atomic.atomic_path(path) as temporary:
        save_file(tensors, str(temporary))


def load_weights(model: nn.Module, path: Path) -> None:
    _unwrap(model).load_state_dict(load_file(str(path)))


# --- One epoch ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpochResult:
    steps_done: int  # steps of this epoch completed so far, counting those before a resume
    loss_sum: float
    interrupted: bool


def train_one_epoch(  # long: keyword-only; the resume point and step settings have defaults
    model: nn.Module,
    *,
    loader: DataLoader[dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: SegmentationLoss,
    runtime: Runtime,
    stop: StopSignal,
    start_step: int = 0,
    loss_sum: float = 0.0,
    max_grad_norm: float = 1.0,
    accumulation: int = 1,
    sync_every: int = 50,
    average: WeightAverage | None = None,
) -> EpochResult:
    """Optimiser steps over `loader` from `start_step`; stops early (interrupted) when SIGTERM arrives.

    Each loader batch is one optimiser step, in `accumulation` micro-batches. Nothing in a step
    waits for the device: step losses are summed on it (float64, in the order a host sum would
    take) and read once at the end; with several processes the stop flag is agreed every
    `sync_every` steps (a single process looks at it every step, which costs nothing). A weight
    `average` follows every optimiser step.
    """
    model.train()
    step = start_step
    offset = loss_sum if runtime.distributed else 0.0  # ranks add their own sums; the mean is taken once
    total = torch.tensor(0.0 if runtime.distributed else loss_sum, dtype=torch.float64, device=runtime.device)
    interrupted = False
    for batch in loader:
        tiles = accel.device_batch(batch, device=runtime.device)
        optimizer.zero_grad(set_to_none=True)
        loss = _accumulate_gradients(model, tiles=tiles, loss_fn=loss_fn, runtime=runtime, parts=accumulation)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        scheduler.step()
        if average is not None:
            average.update()
        total += loss.double()
        step += 1
        looks = not runtime.distributed or step % sync_every == 0
        if looks and runtime.any(stop.requested):
            interrupted = True
            break
    return EpochResult(steps_done=step, loss_sum=offset + runtime.mean(float(total)), interrupted=interrupted)


def _accumulate_gradients(
    model: nn.Module, *, tiles: accel.DeviceBatch, loss_fn: SegmentationLoss, runtime: Runtime, parts: int
) -> torch.Tensor:
    """Backward of the batch's loss in `parts` micro-batches, each weighted by its share of the
    tiles; the (detached) batch loss. One part is the plain step."""
    if parts == 1:
        with autocast(device=runtime.device, bf16=runtime.bf16):
            outputs = model(tiles.images)
        loss = loss_fn(outputs, tiles.classes, tiles.distance)
        loss.backward()
        return loss.detach()
    batch = tiles.images.shape[0]
    chunks = zip(
        tiles.images.tensor_split(parts),
        tiles.classes.tensor_split(parts),
        tiles.distance.tensor_split(parts),
        strict=True,
    )
    total = torch.zeros((), device=runtime.device)
    for number, (images, classes, distance) in enumerate(chunks):
        with accel.gradient_sync(model, last=number == parts - 1):
            with autocast(device=runtime.device, bf16=runtime.bf16):
                outputs = model(images)
            loss = loss_fn(outputs, classes, distance) * (images.shape[0] / batch)
            loss.backward()
        total = total + loss.detach()
    return total


# --- Held-out images ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldOutResult:
    """What the held-out training images (those the epoch and thresholds are chosen on) gave after
    an epoch: their mean loss, their score (`split_score`) and their metrics."""

    loss: float
    score: float
    evaluation: SplitEvaluation


def split_score(evaluation: SplitEvaluation, *, model_type: str) -> float:
    """The held-out score: best F1 at IoU 0.5 (instance) or best mean IoU (semantic) over the sweep."""
    values = [
        point.overall.f1 if model_type == "instance" else point.overall.iou for point in evaluation.sweep
    ]
    present = [value for value in values if value is not None]
    return max(present) if present else 0.0


class HeldOutLoss:
    """An evaluation hook (`evaluation.ImageHook`): the loss of each whole image against its targets,
    and their mean."""

    def __init__(self, loss_fn: SegmentationLoss, *, flow: bool) -> None:
        self.loss_fn = loss_fn
        self.flow = flow
        self.losses: list[float] = []

    def __call__(self, prediction: ImagePrediction) -> None:
        sample = prediction.sample
        classes = torch.from_numpy(sample.class_map())[None]
        target = torch.from_numpy(_target_of(sample, flow=self.flow))[None]
        loss = segmentation_loss(
            prediction.outputs[None],
            classes,
            target,
            class_weights=self.loss_fn.class_weights.cpu(),
            num_classes=self.loss_fn.num_classes,
            distance_weight=self.loss_fn.distance_weight,
        )
        self.losses.append(float(loss))

    @property
    def mean(self) -> float:
        return float(np.mean(self.losses)) if self.losses else 0.0


def evaluate_held_out(
    predictor: Predictor,
    *,
    samples: Sequence[Sample],
    loss_fn: SegmentationLoss,
    class_names: Sequence[str],
) -> HeldOutResult:
    """Loss and score of the held-out images, each predicted whole (the way the final model is used)."""
    loss = HeldOutLoss(loss_fn, flow=predictor.instance_head == "flow")
    evaluator = evaluate_images(predictor, samples=samples, class_names=class_names, hooks=[loss])
    result = evaluator.result()
    return HeldOutResult(
        loss=loss.mean, score=split_score(result, model_type=predictor.model_type), evaluation=result
    )


def _target_of(sample: Sample, *, flow: bool) -> np.ndarray:
    """The instance head's target: H x W distance map, or 2 x H x W flows; zeros when absent."""
    target = sample.flow if flow else sample.distance
    if target is None:
        shape = (2, sample.height, sample.width) if flow else (sample.height, sample.width)
        return np.zeros(shape, dtype=np.float32)
    return np.asarray(target, dtype=np.float32)


# --- The whole run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoopSetup:
    """Everything `fit` needs besides the model."""

    config: TrainingConfig
    runtime: Runtime
    train_samples: Sequence[Sample]
    val_samples: Sequence[Sample]
    class_weights: torch.Tensor
    in_channels: int
    steps_per_epoch: int
    checkpoints: Path
    fingerprint: Fingerprint
    stop: StopSignal
    encoder_pretrained: bool = True
    num_workers: int = 0
    accel: accel.AccelOptions = field(default_factory=accel.AccelOptions)
    #: The random changes to each training tile (the preset's, `PresetSpec.augmentation`).
    augmentation: Augmentation = field(default_factory=Augmentation)
    #: Where progress goes (checkpoints/progress.json by default) and the epochs shown before this
    #: loop's (a refit continues the first phase's count).
    progress_file: Path | None = None
    progress_offset: int = 0


@dataclass(frozen=True)
class FitResult:
    state: TrainState
    interrupted: bool


@dataclass(frozen=True)
class Optimisation:
    """What changes the weights and is saved with them: optimiser, schedule, weight average."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    average: WeightAverage | None  # None: the trained weights are scored and kept as they are

    @classmethod
    def build(cls, model: Segmenter, *, setup: LoopSetup) -> Optimisation:
        config = setup.config
        optimizer = build_optimizer(model, config=config, encoder_pretrained=setup.encoder_pretrained)
        scheduler = build_scheduler(
            optimizer,
            total_steps=config.epochs * setup.steps_per_epoch,
            warmup_fraction=config.warmup_fraction,
        )
        average = WeightAverage.for_training(
            model, half_life_epochs=config.weight_average_epochs, steps_per_epoch=setup.steps_per_epoch
        )
        return cls(optimizer=optimizer, scheduler=scheduler, average=average)

    def resume(self, model: nn.Module, *, setup: LoopSetup) -> TrainState:
        """Where a checkpoint in `setup.checkpoints` left off (weights, optimiser, schedule and average
        restored), else the start."""
        state = load_checkpoint(
            setup.checkpoints / CHECKPOINT_FILE,
            model=model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            fingerprint=setup.fingerprint,
            average=self.average,
        )
        return state or TrainState()

    def finish(self) -> None:
        """A finished training keeps the averaged weights."""
        if self.average is not None:
            self.average.copy_to_model()

    def averaged(self) -> AbstractContextManager[None]:
        """A block in which the model holds the averaged weights (the trained ones without an average)."""
        return self.average.applied() if self.average else nullcontext()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 17) % 2**63


def make_loader(setup: LoopSetup, *, epoch: int, start_step: int) -> DataLoader[dict[str, torch.Tensor]]:
    """The tiles of one epoch for this process, from `start_step` on."""
    batch = setup.config.batch_size
    dataset = TileDataset(
        samples=setup.train_samples,
        tile_size=setup.config.tile_size,
        in_channels=setup.in_channels,
        length=setup.steps_per_epoch * batch * setup.runtime.world,
        seed=setup.config.seed,
        epoch=epoch,
        augmentation=setup.augmentation,
        compact=setup.accel.augments_on_device(setup.runtime.device),
    )
    sampler = StepSampler(
        steps=setup.steps_per_epoch,
        batch_size=batch,
        start=start_step,
        rank=setup.runtime.rank,
        world=setup.runtime.world,
    )
    return DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        num_workers=setup.num_workers,
        pin_memory=setup.runtime.device.type == "cuda",
        prefetch_factor=4 if setup.num_workers else None,
        drop_last=False,
        # Its own generator: creating the iterator must not draw from the global one (dropout's).
        generator=torch.Generator().manual_seed(epoch_seed(setup.config.seed, epoch)),
    )


def fit(model: Segmenter, *, setup: LoopSetup, predictor: Predictor) -> FitResult:
    """Train for config.epochs (resuming from checkpoints/ when one exists), scoring the held-out
    images (`setup.val_samples`) after each epoch.

    Only rank 0 scores, logs metrics and writes checkpoints; the decision to stop early is
    broadcast. The best weights by held-out score are kept in checkpoints/best.safetensors.
    """
    config, runtime = setup.config, setup.runtime
    loss_fn = SegmentationLoss(class_weights=setup.class_weights, num_classes=len(config.classes)).to(
        runtime.device
    )
    optimisation = Optimisation.build(model, setup=setup)
    state = optimisation.resume(model, setup=setup)
    wrapped, plan = _accelerate(setup, model=model, wrapped=_distributed(model, runtime), loss_fn=loss_fn)
    while not state.finished and state.epoch < config.epochs:
        if state.step_in_epoch == 0:
            torch.manual_seed(epoch_seed(config.seed, state.epoch))
        started, first_step = time.perf_counter(), state.step_in_epoch
        result = train_one_epoch(
            wrapped,
            loader=make_loader(setup, epoch=state.epoch, start_step=state.step_in_epoch),
            optimizer=optimisation.optimizer,
            scheduler=optimisation.scheduler,
            loss_fn=loss_fn,
            runtime=runtime,
            stop=setup.stop,
            start_step=state.step_in_epoch,
            loss_sum=state.loss_sum,
            accumulation=plan.accumulation,
            sync_every=setup.accel.sync_every,
            average=optimisation.average,
        )
        if result.interrupted and result.steps_done < setup.steps_per_epoch:
            state.step_in_epoch, state.loss_sum = result.steps_done, result.loss_sum
            _checkpoint(setup, model=model, optimisation=optimisation, state=state)
            return FitResult(state=state, interrupted=True)
        trained = time.perf_counter()
        with optimisation.averaged():
            state = _end_epoch(
                setup, model=model, predictor=predictor, loss_fn=loss_fn, state=state, result=result
            )
        logger.info(
            "Epoch %d: %.1f s training (%.3f s per step), %.1f s validating",
            state.epoch,
            trained - started,
            (trained - started) / max(1, result.steps_done - first_step),
            time.perf_counter() - trained,
        )
        _checkpoint(setup, model=model, optimisation=optimisation, state=state)
        if runtime.any(setup.stop.requested) and not state.finished:
            return FitResult(state=state, interrupted=True)
    optimisation.finish()
    return FitResult(state=state, interrupted=False)


def _distributed(model: Segmenter, runtime: Runtime) -> nn.Module:
    """The model wrapped for data-parallel training when there are several processes."""
    if not runtime.distributed:
        return model
    ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def _accelerate(
    setup: LoopSetup, *, model: Segmenter, wrapped: nn.Module, loss_fn: SegmentationLoss
) -> tuple[nn.Module, accel.BatchPlan]:
    """The micro-batch plan for the GPU's memory, and the (compiled) module to train.

    Probe and warm-up steps leave no trace (`accel.preserved_state`), so a resumed run still ends
    with the weights of an uninterrupted one.
    """
    config, runtime, options = setup.config, setup.runtime, setup.accel
    if options.channels_last:
        accel.channels_last_decoder(model)

    def step(module: nn.Module, batch: int) -> None:
        shape = (batch, config.tile_size, config.tile_size)
        images = torch.randn((batch, setup.in_channels, *shape[1:]), device=runtime.device)
        classes = torch.randint(0, loss_fn.num_classes + 1, shape, device=runtime.device)
        with autocast(device=runtime.device, bf16=runtime.bf16):
            outputs = module(images)
        loss_fn(outputs, classes, torch.rand(shape, device=runtime.device)).backward()

    with accel.preserved_state(model):
        fits = accel.probe_batch_capacity(
            lambda batch: step(model, batch),
            device=runtime.device,
            limit=min(config.batch_size, options.max_micro_batch),
            margin=options.memory_margin,
            extra_bytes=accel.optimizer_state_bytes(model),
        )
    plan = accel.BatchPlan.for_request(config.batch_size, fits=runtime.broadcast(fits))
    if plan.accumulation > 1:
        logger.info(
            "Each step of %d tiles runs as %d micro-batches of %d (gradient accumulation)",
            plan.effective,
            plan.accumulation,
            plan.micro_batch,
        )
    if not options.compiles(runtime.device):
        return wrapped, plan
    with accel.preserved_state(model):
        compiled = accel.compile_module(
            wrapped,
            what="training model",
            cache_dir=setup.checkpoints / accel.COMPILE_CACHE_DIR,
            warmup=lambda module: step(module, plan.micro_batch),
        )
    return compiled, plan


def _end_epoch(
    setup: LoopSetup,
    *,
    model: Segmenter,
    predictor: Predictor,
    loss_fn: SegmentationLoss,
    state: TrainState,
    result: EpochResult,
) -> TrainState:
    """Score the held-out images (rank 0), log, track the best weights, decide on early stopping;
    the new state."""
    config = setup.config
    epoch = state.epoch + 1
    train_loss = result.loss_sum / max(1, setup.steps_per_epoch)
    held_out = None
    if setup.runtime.is_main:
        metrics_logger.info("epoch=%d train_loss=%.6f", epoch, train_loss)
        if setup.val_samples:
            held_out = evaluate_held_out(
                predictor, samples=setup.val_samples, loss_fn=loss_fn, class_names=config.classes
            )
            metrics_logger.info("epoch=%d val_loss=%.6f val_score=%.6f", epoch, held_out.loss, held_out.score)
    state = setup.runtime.broadcast(
        _next_state(setup, state=state, epoch=epoch, loss=train_loss, held_out=held_out)
    )
    if setup.runtime.is_main and state.best_epoch == epoch:
        save_weights(model, setup.checkpoints / BEST_WEIGHTS_FILE)
    return state


def _next_state(
    setup: LoopSetup, *, state: TrainState, epoch: int, loss: float, held_out: HeldOutResult | None
) -> TrainState:
    config = setup.config
    score = held_out.score if held_out else None
    improved = score is not None and (state.best_score is None or score > state.best_score)
    stale = 0 if improved else state.stale_epochs + 1
    patience = config.early_stopping_patience
    stopped_early = held_out is not None and patience > 0 and stale >= patience
    if stopped_early:
        logger.info("Stopping early after epoch %d: no better validation score for %d epochs", epoch, stale)
    history_entry = {
        "epoch": float(epoch),
        "train_loss": loss,
        "val_loss": held_out.loss if held_out else None,
        "val_score": score,
    }
    return TrainState(
        epoch=epoch,
        best_score=score if improved else state.best_score,
        best_epoch=epoch if improved else state.best_epoch,
        stale_epochs=stale,
        finished=stopped_early or epoch >= config.epochs,
        history=[*state.history, history_entry],
    )


def _checkpoint(setup: LoopSetup, *, model: nn.Module, optimisation: Optimisation, state: TrainState) -> None:
    """Rank 0 writes checkpoints/last.pt and progress.json."""
    if not setup.runtime.is_main:
        return
    save_checkpoint(
        setup.checkpoints / CHECKPOINT_FILE,
        model=model,
        optimizer=optimisation.optimizer,
        scheduler=optimisation.scheduler,
        state=state,
        fingerprint=setup.fingerprint,
        average=optimisation.average,
    )
    last = state.history[-1] if state.history else {}
    write_progress(
        setup.progress_file or setup.checkpoints / "progress.json",
        progress=Progress(
            epoch=setup.progress_offset + state.epoch,
            epochs=setup.progress_offset + setup.config.epochs,
            train_loss=last.get("train_loss"),
            val_score=last.get("val_score"),
        ),
    )


def write_progress(path: Path, *, progress: Progress) -> None:
    """`checkpoints/progress.json`, stamped with the current time."""
    stamped = progress.model_copy(update={"updated_at": datetime.now(UTC).isoformat(timespec="seconds")})
    atomic.write_text(path, stamped.model_dump_json(indent=2))


def restore_best(model: nn.Module, *, checkpoints: Path, state: TrainState) -> bool:
    """Load the best validated weights into `model` when there are any; True if loaded."""
    path = checkpoints / BEST_WEIGHTS_FILE
    if state.best_epoch is None or not path.is_file():
        return False
    load_weights(model, path)
    logger.info(
        "Using the weights of epoch %d (best validation score %.4f)", state.best_epoch, state.best_score
    )
    return True
