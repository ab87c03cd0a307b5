"""One training job from inputs to outputs: read the split, prepare images, train, evaluate, write.

`run_job` is what `train` runs in every process (one, or one per GPU under torchrun).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from segpipe.models.coco import CocoDataset
from segpipe.models.common import Preset
from segpipe.models.trainer_io import Normalization, Progress, TrainingConfig
from segpipe_trainer import accel
from segpipe_trainer.base import StartingPoint, continue_from, find_starting_point
from segpipe_trainer.data import (
    ClassMap,
    ImageEntry,
    Sample,
    SampleCache,
    SampleOptions,
    carve_validation,
    class_pixel_weights,
    default_steps_per_epoch,
    find_manifest,
    image_entries,
    load_manifest,
    load_sample,
)
from segpipe_trainer.distributed import Runtime
from segpipe_trainer.errors import TrainerError
from segpipe_trainer.infer import Predictor, accelerated
from segpipe_trainer.model import Segmenter, build_model, count_parameters, preset_spec
from segpipe_trainer.outputs import (
    SplitOutputs,
    build_evaluation,
    evaluate_split,
    model_card,
    write_json,
    write_model,
)
from segpipe_trainer.paths import MlPaths
from segpipe_trainer.train import (
    Fingerprint,
    FitResult,
    LoopSetup,
    StopSignal,
    TrainState,
    fit,
    restore_best,
    seed_everything,
    write_progress,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobInputs:
    """The split manifests as images with annotations, and the class mapping."""

    class_map: ClassMap
    train: list[ImageEntry]
    test: list[ImageEntry]


def read_inputs(paths: MlPaths, *, config: TrainingConfig) -> JobInputs:
    """Read split/train.json (required) and split/test.json (optional, may be empty)."""
    train_path = find_manifest(paths.split, split="train")
    if train_path is None:
        raise TrainerError("The 'split' channel has no train.json manifest")
    train_manifest = load_manifest(train_path)
    test_path = find_manifest(paths.split, split="test")
    manifests: list[CocoDataset] = [train_manifest]
    if test_path is not None:
        manifests.append(load_manifest(test_path))
    class_map = ClassMap.build(classes=config.classes, manifests=manifests)
    train = image_entries(train_manifest)
    test = image_entries(manifests[1]) if len(manifests) > 1 else []
    if not train:
        raise TrainerError("The training split has no completed images")
    if not any(a.category_id in class_map.class_of for entry in train for a in entry.annotations):
        raise TrainerError(
            f"The training split has no annotations of the classes {', '.join(config.classes)}"
        )
    return JobInputs(class_map=class_map, train=train, test=test)


def prepare_samples(
    entries: Sequence[ImageEntry], *, options: SampleOptions, paths: MlPaths, runtime: Runtime
) -> list[Sample]:
    """Load every training image once per host (local rank 0) into a memory-mapped cache."""
    cache = SampleCache(directory=paths.work_dir / "samples")
    failure: TrainerError | None = None
    samples: list[Sample] = []
    if runtime.local_rank == 0:
        try:
            samples = cache.write(_loaded(entries, options=options))
        except TrainerError as exc:
            failure = exc
    if runtime.any(failure is not None):
        raise failure or TrainerError("Another process of this job could not prepare the training images")
    runtime.barrier()
    return samples if runtime.local_rank == 0 else cache.read()


def _loaded(entries: Sequence[ImageEntry], *, options: SampleOptions) -> Iterator[Sample]:
    for number, entry in enumerate(entries, start=1):
        yield load_sample(entry, options=options)
        if number % 50 == 0:
            logger.info("Prepared %d of %d training images", number, len(entries))


def build_job_model(
    *, config: TrainingConfig, start: StartingPoint, in_channels: int, runtime: Runtime
) -> tuple[Segmenter, Preset]:
    """(model on the device, preset used). A previous model fixes the preset; its weights are loaded."""
    seed_everything(config.seed)
    preset = config.preset
    if start.previous_model:
        assert start.card is not None
        if start.card.preset != preset:
            logger.warning("Using the base model's preset %s instead of %s", start.card.preset, preset)
        preset = start.card.preset
    weights: Any = start.encoder_file if start.encoder_file is not None else "hub"
    model = build_model(
        preset=preset,
        num_classes=len(config.classes),
        model_type=config.model_type,
        in_channels=in_channels,
        weights="random" if start.previous_model else weights,
    )
    if start.previous_model:
        continue_from(model, start=start, classes=list(config.classes), model_type=config.model_type)
    logger.info(
        "Model %s: %.2f M parameters, starting from %s",
        preset,
        count_parameters(model) / 1e6,
        start.describe(),
    )
    return model.to(runtime.device), preset


def data_loader_workers(runtime: Runtime) -> int:
    """Tile workers per process: none on CPU (the model needs the cores), a share of the host on GPU."""
    return accel.loader_workers(device=runtime.device, local_world=runtime.local_world)


@dataclass(frozen=True)
class JobOutcome:
    interrupted: bool
    fit: FitResult


def run_job(*, paths: MlPaths, config: TrainingConfig, runtime: Runtime, stop: StopSignal) -> JobOutcome:
    """Train and, on rank 0, write every output. Interrupted runs leave a checkpoint and no outputs."""
    logger.info(
        "Training a %s model (%s) of %s for project %s, version %s",
        config.model_type,
        config.preset,
        ", ".join(config.classes),
        config.project or "-",
        config.version if config.version is not None else "-",
    )
    inputs = read_inputs(paths, config=config)
    start = find_starting_point(paths.base, work_dir=paths.work_dir)
    fit_entries, val_entries = carve_validation(inputs.train, fraction=config.validation_fraction)
    normalization = start.card.normalization if start.card is not None else Normalization()
    options = SampleOptions(
        dataset_dir=paths.dataset,
        class_map=inputs.class_map,
        model_type=config.model_type,
        normalization=normalization,
    )
    samples = prepare_samples([*fit_entries, *val_entries], options=options, paths=paths, runtime=runtime)
    fit_samples, val_samples = samples[: len(fit_entries)], samples[len(fit_entries) :]
    in_channels = start.card.in_channels if start.card is not None else max(s.channels for s in samples)
    model, preset = build_job_model(config=config, start=start, in_channels=in_channels, runtime=runtime)
    steps = config.steps_per_epoch or default_steps_per_epoch(
        fit_samples, tile_size=config.tile_size, batch_size=config.batch_size, world=runtime.world
    )
    class_weights = class_pixel_weights(fit_samples, num_classes=len(config.classes))
    resolved = {
        **config.model_dump(mode="json"),
        "preset": str(preset),
        "in_channels": in_channels,
        "steps_per_epoch": steps,
        "normalization": normalization.model_dump(),
        "class_weights": [round(float(w), 4) for w in class_weights],
        "train_images": len(fit_entries),
        "validation_images": [entry.file_name for entry in val_entries],
        "test_images": len(inputs.test),
        "base": start.describe(),
        "device": str(runtime.device),
        "world_size": runtime.world,
        "torch": torch.__version__,
    }
    if runtime.is_main:
        write_json(paths.resolved_config, resolved)
    speed = accel.AccelOptions.from_environment()
    predictor = Predictor(
        model=model,
        model_type=config.model_type,
        num_classes=len(config.classes),
        tile_size=config.tile_size,
        in_channels=in_channels,
        device=runtime.device,
        bf16=runtime.bf16,
        min_area=config.min_object_area,
    )
    if runtime.is_main:  # the only process that predicts
        predictor = accelerated(
            predictor,
            compile_model=speed.compiles(runtime.device),
            cache_dir=paths.checkpoints / accel.COMPILE_CACHE_DIR,
        )
    setup = LoopSetup(
        config=config,
        runtime=runtime,
        train_samples=fit_samples,
        val_samples=val_samples,
        class_weights=torch.from_numpy(class_weights),
        in_channels=in_channels,
        steps_per_epoch=steps,
        checkpoints=paths.checkpoints,
        fingerprint=Fingerprint(
            preset=str(preset),
            model_type=config.model_type,
            classes=tuple(config.classes),
            tile_size=config.tile_size,
            seed=config.seed,
            in_channels=in_channels,
            world=runtime.world,
        ),
        stop=stop,
        encoder_pretrained=start.previous_model
        or start.encoder_file is not None
        or preset_spec(preset).pretrained,
        num_workers=data_loader_workers(runtime),
        accel=speed,
    )
    result = fit(model, setup=setup, predictor=predictor)
    if result.interrupted:
        logger.warning(
            "Training was interrupted after %d epochs; the checkpoint resumes it", result.state.epoch
        )
        return JobOutcome(interrupted=True, fit=result)
    if runtime.is_main:
        restore_best(model, checkpoints=paths.checkpoints, state=result.state)
        final = FinalOutputs(
            paths=paths, config=config, predictor=predictor, resolved=resolved, preset=preset
        )
        final.write(train=samples, test=inputs.test, options=options, result=result)
    runtime.barrier()
    if runtime.local_rank == 0:
        shutil.rmtree(paths.work_dir, ignore_errors=True)
    return JobOutcome(interrupted=False, fit=result)


@dataclass(frozen=True)
class FinalOutputs:
    """Rank 0's last phase: evaluate train and test, write predictions, evaluation and the model."""

    paths: MlPaths
    config: TrainingConfig
    predictor: Predictor
    resolved: dict[str, Any]
    preset: Preset

    def _progress(self, *, state: TrainState, phase: Literal["evaluating", "done"]) -> None:
        last = state.history[-1] if state.history else {}
        progress = Progress(
            epoch=state.epoch,
            epochs=self.config.epochs,
            train_loss=last.get("train_loss"),
            val_score=last.get("val_score"),
            phase=phase,
        )
        write_progress(self.paths.progress, progress=progress)

    def write(
        self,
        *,
        train: Sequence[Sample],
        test: Sequence[ImageEntry],
        options: SampleOptions,
        result: FitResult,
    ) -> None:
        config, epochs = self.config, result.state.epoch
        self._progress(state=result.state, phase="evaluating")
        names = list(config.classes)
        train_eval = evaluate_split(
            self.predictor, samples=train, class_names=names, outputs=self._split_outputs("train")
        )
        test_eval = None
        if test:
            test_samples = (load_sample(entry, options=options) for entry in test)
            test_eval = evaluate_split(
                self.predictor, samples=test_samples, class_names=names, outputs=self._split_outputs("test")
            )
        evaluation = build_evaluation(
            config=config,
            train=train_eval,
            test=test_eval,
            epochs_trained=epochs,
            best_epoch=result.state.best_epoch,
        )
        write_json(self.paths.evaluation, evaluation)
        card = model_card(
            config=config,
            preset=self.preset,
            in_channels=self.predictor.in_channels,
            evaluation=evaluation,
            resolved=self.resolved,
            normalization=options.normalization,
        )
        write_model(self.predictor, card=card, paths=self.paths)
        self._progress(state=result.state, phase="done")
        logger.info(
            "Suggested threshold %.2f (tuned on %s)",
            evaluation.suggested_threshold,
            evaluation.suggested_from,
        )

    def _split_outputs(self, split: Literal["train", "test"]) -> SplitOutputs:
        return SplitOutputs(
            split=split,
            paths=self.paths,
            class_names=list(self.config.classes),
            score_floor=self.config.score_floor,
        )
