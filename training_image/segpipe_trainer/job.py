"""One training job from inputs to outputs: read the split, prepare images, train, evaluate, write.

`run_job` is what `train` runs in every process (one, or one per GPU under torchrun).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch

from segpipe.models import selection
from segpipe.models.coco import CocoDataset
from segpipe.models.common import Preset, SplitName
from segpipe.models.presets import PRESETS as PRESET_FACTS
from segpipe.models.trainer_io import EpochsSource, Normalization, Progress, SplitEvaluation, TrainingConfig
from segpipe_trainer import accel
from segpipe_trainer.base import StartingPoint, continue_from, find_starting_point
from segpipe_trainer.bootstrap import bootstrap_intervals
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
from segpipe_trainer.infer import Predictor, accelerated, predictor_on
from segpipe_trainer.levels import LevelChoice, choose_split_level
from segpipe_trainer.model import Segmenter, build_model, count_parameters, preset_spec, resolved_head
from segpipe_trainer.outputs import (
    Choice,
    SplitOutputs,
    build_evaluation,
    evaluate_split,
    model_card,
    predict_split,
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

#: Re-exported: with fewer held-out groups than this, the final model is refit (segpipe.models.selection).
REFIT_BELOW_GROUPS = selection.REFIT_BELOW_GROUPS


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
    head = resolved_head(config)
    model = build_model(
        preset=preset,
        num_classes=len(config.classes),
        model_type=config.model_type,
        in_channels=in_channels,
        weights="random" if start.previous_model else weights,
        instance_head=head,
    )
    if start.previous_model:
        continue_from(
            model, start=start, classes=list(config.classes), model_type=config.model_type, instance_head=head
        )
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
class SelectionPlan:
    """Which training images choose (validation) and which train, and whether to refit on all."""

    fit: list[ImageEntry]
    validation: list[ImageEntry]
    method: Literal["holdout", "refit", "none"]

    @classmethod
    def build(cls, entries: Sequence[ImageEntry], *, fraction: float) -> SelectionPlan:
        fit_entries, val_entries = carve_validation(entries, fraction=fraction)
        if not val_entries:
            return cls(fit=fit_entries, validation=[], method="none")
        groups = len({entry.group for entry in val_entries})
        return cls(fit=fit_entries, validation=val_entries, method=selection.selection_method(groups))


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
    job = set_up_job(paths=paths, config=config, runtime=runtime, stop=stop)
    trained = train_job(job)
    if trained.final.interrupted:
        return _interrupted(trained.final)
    finish_job(job, trained=trained)
    return JobOutcome(interrupted=False, fit=trained.first)


# --- Setup ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobSetup:
    """What `set_up_job` prepared: inputs, the choice plan, the images, the model and its loop."""

    paths: MlPaths
    inputs: JobInputs
    start: StartingPoint
    plan: SelectionPlan
    options: SampleOptions
    samples: list[Sample]  # the images trained on (loop.train_samples), then the held-out ones
    model: Segmenter
    preset: Preset
    resolved: dict[str, Any]  # output/data/config.json
    predictor: Predictor
    loop: LoopSetup

    @property
    def config(self) -> TrainingConfig:
        return self.loop.config

    @property
    def runtime(self) -> Runtime:
        return self.loop.runtime


def set_up_job(*, paths: MlPaths, config: TrainingConfig, runtime: Runtime, stop: StopSignal) -> JobSetup:
    """Read the split, hold images out, prepare every training image, build the model and its
    training loop; rank 0 writes the resolved config."""
    inputs = read_inputs(paths, config=config)
    start = find_starting_point(paths.base, work_dir=paths.work_dir)
    plan = SelectionPlan.build(inputs.train, fraction=config.validation_fraction)
    options = SampleOptions(
        dataset_dir=paths.dataset,
        class_map=inputs.class_map,
        model_type=config.model_type,
        normalization=start.card.normalization if start.card is not None else Normalization(),
        instance_head=resolved_head(config),
    )
    samples = prepare_samples([*plan.fit, *plan.validation], options=options, paths=paths, runtime=runtime)
    fit_samples, val_samples = samples[: len(plan.fit)], samples[len(plan.fit) :]
    in_channels = start.card.in_channels if start.card is not None else max(s.channels for s in samples)
    model, preset = build_job_model(config=config, start=start, in_channels=in_channels, runtime=runtime)
    config = with_preset_defaults(config, preset=preset)
    loop = LoopSetup(
        config=config,
        runtime=runtime,
        train_samples=fit_samples,
        val_samples=val_samples,
        class_weights=torch.from_numpy(class_pixel_weights(fit_samples, num_classes=len(config.classes))),
        in_channels=in_channels,
        steps_per_epoch=config.steps_per_epoch
        or default_steps_per_epoch(
            fit_samples, tile_size=config.tile_size, batch_size=config.batch_size, world=runtime.world
        ),
        checkpoints=paths.checkpoints,
        fingerprint=_fingerprint(config, preset=preset, in_channels=in_channels, world=runtime.world),
        stop=stop,
        encoder_pretrained=start.previous_model
        or start.encoder_file is not None
        or preset_spec(preset).pretrained,
        num_workers=data_loader_workers(runtime),
        accel=accel.AccelOptions.from_environment(),
        augmentation=preset_spec(preset).augmentation,
    )
    resolved = _resolved_config(loop, preset=preset, options=options, plan=plan, inputs=inputs, start=start)
    if runtime.is_main:
        write_json(paths.resolved_config, resolved)
    return JobSetup(
        paths=paths,
        inputs=inputs,
        start=start,
        plan=plan,
        options=options,
        samples=samples,
        model=model,
        preset=preset,
        resolved=resolved,
        predictor=_job_predictor(model, loop=loop),
        loop=loop,
    )


def with_preset_defaults(config: TrainingConfig, *, preset: Preset) -> TrainingConfig:
    """`config` with what it leaves unset taken from the preset the job trains (a base model's
    preset wins over the requested one), so the resolved config shows the values used."""
    if config.learning_rate is not None:
        return config
    return config.model_copy(update={"learning_rate": PRESET_FACTS[preset].learning_rate})


def _fingerprint(config: TrainingConfig, *, preset: Preset, in_channels: int, world: int) -> Fingerprint:
    return Fingerprint(
        preset=str(preset),
        model_type=config.model_type,
        classes=tuple(config.classes),
        tile_size=config.tile_size,
        seed=config.seed,
        in_channels=in_channels,
        world=world,
        instance_head=resolved_head(config),
    )


def _resolved_config(
    loop: LoopSetup,
    *,
    preset: Preset,
    options: SampleOptions,
    plan: SelectionPlan,
    inputs: JobInputs,
    start: StartingPoint,
) -> dict[str, Any]:
    """output/data/config.json: the request's settings and every value the job derived from them."""
    config, runtime = loop.config, loop.runtime
    return {
        **config.model_dump(mode="json"),
        "preset": str(preset),
        "in_channels": loop.in_channels,
        "steps_per_epoch": loop.steps_per_epoch,
        "normalization": options.normalization.model_dump(),
        "class_weights": [round(float(w), 4) for w in loop.class_weights],
        "train_images": len(plan.fit),
        "validation_images": [entry.file_name for entry in plan.validation],
        "selection": plan.method,
        "instance_head": resolved_head(config) if config.model_type == "instance" else None,
        "test_time_flips": config.flips_at_test,
        "test_images": len(inputs.test),
        "base": start.describe(),
        "device": str(runtime.device),
        "world_size": runtime.world,
        "torch": torch.__version__,
    }


def _job_predictor(model: Segmenter, *, loop: LoopSetup) -> Predictor:
    """The model as rank 0 predicts with it (the only process that does): as many windows per batch
    as the GPU holds, compiled where that pays."""
    config, runtime = loop.config, loop.runtime
    predictor = predictor_on(
        model,
        config,
        in_channels=loop.in_channels,
        instance_head=resolved_head(config),
        test_time_flips=config.flips_at_test,
        runtime=runtime,
    )
    if not runtime.is_main:
        return predictor
    return accelerated(
        predictor,
        compile_model=loop.accel.compiles(runtime.device),
        cache_dir=loop.checkpoints / accel.COMPILE_CACHE_DIR,
    )


# --- Run -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trained:
    """What `train_job` leaves: the first phase's fit, the fit the final model comes from (the same
    one, or the refit's), its predictor, and what the held-out images measured."""

    first: FitResult
    final: FitResult
    predictor: Predictor
    held_out: SplitEvaluation | None  # of the held-out images, by the model that chose on them
    final_images: int  # training images the final model was trained on
    progress_offset: int = 0  # epochs of the first phase before a refit
    epochs_from: EpochsSource = "validation"  # the final model's epoch count
    split: LevelChoice | None = None  # the split level the held-out images chose (instance models)


def train_job(job: JobSetup) -> Trained:
    """Fit with early stopping on the held-out images; rank 0 then restores the best epoch's weights
    and measures the held-out images; a refit plan trains a fresh model on every training image for
    the chosen epoch count. An interrupted phase is the `final` fit, marked interrupted."""
    result = fit(job.model, setup=job.loop, predictor=job.predictor)
    trained = Trained(
        first=result,
        final=result,
        predictor=job.predictor,
        held_out=None,
        final_images=len(job.loop.train_samples),
    )
    if result.interrupted:
        return trained
    if job.runtime.is_main:
        restore_best(job.model, checkpoints=job.paths.checkpoints, state=result.state)
        if job.loop.val_samples:
            trained = _measure_held_out(job, trained=trained)
    if job.plan.method != "refit" or result.state.best_epoch is None:
        return trained
    epochs = refit_epochs(result.state, configured=job.config.epochs)
    refit = _refit(
        job.loop,
        epochs=epochs.epochs,
        first_epochs=result.state.epoch,
        samples=job.samples,
        start=job.start,
        predictor=trained.predictor,
    )
    return replace(
        trained,
        final=refit.result,
        predictor=refit.predictor,
        final_images=len(job.samples),
        progress_offset=result.state.epoch,
        epochs_from=epochs.source,
    )


def _measure_held_out(job: JobSetup, *, trained: Trained) -> Trained:
    """The held-out images measured by the best epoch's model; an instance model's split level is
    chosen on them first, and every later prediction (refit, train, test, analyses) uses it."""
    samples, classes = job.loop.val_samples, job.config.classes
    if job.config.model_type != "instance":
        held_out = evaluate_split(job.predictor, samples=samples, class_names=classes, outputs=None)
        return replace(trained, held_out=held_out)
    split = choose_split_level(job.predictor, samples=samples, class_names=classes)
    logger.info(
        "Split level %g chosen on the held-out images (scores: %s)",
        split.level,
        ", ".join(f"{level:g}: {score:.3f}" for level, score in split.scores.items()),
    )
    return replace(
        trained,
        held_out=split.evaluation,
        predictor=replace(job.predictor, split_level=split.level),
        split=split,
    )


def _interrupted(result: FitResult) -> JobOutcome:
    logger.warning("Training was interrupted after %d epochs; the checkpoint resumes it", result.state.epoch)
    return JobOutcome(interrupted=True, fit=result)


@dataclass(frozen=True)
class Refit:
    predictor: Predictor
    result: FitResult


def _refit(
    setup: LoopSetup,
    *,
    epochs: int,
    first_epochs: int,
    samples: list[Sample],
    start: StartingPoint,
    predictor: Predictor,
) -> Refit:
    """A fresh model trained on every training image for `epochs` (the chosen count), no validation.

    Its checkpoints live in checkpoints/refit/, so an interrupted refit resumes there; the first
    phase's finished checkpoint makes `fit` return at once on a resume.
    """
    config = setup.config.model_copy(update={"epochs": epochs, "early_stopping_patience": 0})
    logger.info(
        "Refitting on all %d training images for the chosen %d epochs (validation held out %d)",
        len(samples),
        epochs,
        len(setup.val_samples),
    )
    model, _ = build_job_model(
        config=config, start=start, in_channels=setup.in_channels, runtime=setup.runtime
    )
    steps = config.steps_per_epoch or default_steps_per_epoch(
        samples, tile_size=config.tile_size, batch_size=config.batch_size, world=setup.runtime.world
    )
    refit_setup = replace(
        setup,
        config=config,
        train_samples=samples,
        val_samples=[],
        class_weights=torch.from_numpy(class_pixel_weights(samples, num_classes=len(config.classes))),
        steps_per_epoch=steps,
        checkpoints=setup.checkpoints / "refit",
        progress_file=setup.checkpoints / "progress.json",
        progress_offset=first_epochs,
    )
    # A compiled inference runner belongs to the first phase's model: compile the refit's own.
    runner = (
        None
        if predictor.runner is None
        else accel.compile_module(
            model, what="inference model (refit)", cache_dir=setup.checkpoints / accel.COMPILE_CACHE_DIR
        )
    )
    refit_predictor = replace(predictor, model=model, runner=runner)
    return Refit(predictor=refit_predictor, result=fit(model, setup=refit_setup, predictor=refit_predictor))


# --- Finish --------------------------------------------------------------------------------------


def finish_job(job: JobSetup, *, trained: Trained) -> None:
    """Rank 0 evaluates train and test and writes every output; then each host's work folder goes."""
    if job.runtime.is_main:
        final = FinalOutputs(
            paths=job.paths,
            config=job.config,
            predictor=trained.predictor,
            resolved=job.resolved,
            preset=job.preset,
            progress_offset=trained.progress_offset,
        )
        final.write(
            train=job.samples,
            test=job.inputs.test,
            options=job.options,
            result=trained.final,
            choice=_choice(job.plan, trained=trained),
        )
    job.runtime.barrier()
    if job.runtime.local_rank == 0:
        shutil.rmtree(job.paths.work_dir, ignore_errors=True)


def _choice(plan: SelectionPlan, *, trained: Trained) -> Choice:
    """How the epoch and the thresholds were chosen, for evaluation.json."""
    return Choice(
        method=plan.method,
        validation_images=[entry.file_name for entry in plan.validation],
        validation_groups=len({entry.group for entry in plan.validation}),
        validation=trained.held_out,
        chosen_epoch=trained.first.state.best_epoch,
        final_images=trained.final_images,
        epochs_from=trained.epochs_from,
        split=trained.split,
    )


@dataclass(frozen=True)
class RefitEpochs:
    epochs: int
    source: EpochsSource


def refit_epochs(state: TrainState, *, configured: int) -> RefitEpochs:
    """How long the refit trains: as long as the first phase did. That is every configured epoch,
    unless early stopping ended it (the held-out images had not improved for the patience).

    Not the held-out images' best epoch: the few held-out images of a refit plan score each epoch
    too unsteadily for their single best epoch to be a good count. On the real nuclei
    (`model.tiny`'s docstring), refits for the best epoch of one held-out tile scored below the
    full schedule on four folds of six and tied on two.
    """
    if state.finished and state.epoch < configured:
        return RefitEpochs(state.epoch, "validation")
    return RefitEpochs(configured, "config")


@dataclass(frozen=True)
class FinalOutputs:
    """Rank 0's last phase: evaluate train and test, write predictions, evaluation and the model."""

    paths: MlPaths
    config: TrainingConfig
    predictor: Predictor
    resolved: dict[str, Any]
    preset: Preset
    progress_offset: int = 0  # epochs of a first phase before a refit (progress shows both)

    def _progress(self, *, state: TrainState, phase: Literal["evaluating", "done"]) -> None:
        last = state.history[-1] if state.history else {}
        progress = Progress(
            epoch=self.progress_offset + state.epoch,
            epochs=self.progress_offset + (state.epoch if self.progress_offset else self.config.epochs),
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
        choice: Choice,
    ) -> None:
        config, epochs = self.config, result.state.epoch
        self._progress(state=result.state, phase="evaluating")
        names = list(config.classes)
        train_eval = evaluate_split(
            self.predictor, samples=train, class_names=names, outputs=self._split_outputs("train")
        )
        test_evaluator = None
        if test:
            test_samples = (load_sample(entry, options=options) for entry in test)
            test_evaluator = predict_split(
                self.predictor, samples=test_samples, class_names=names, outputs=self._split_outputs("test")
            )
        evaluation = build_evaluation(
            config=config,
            train=train_eval,
            test=test_evaluator.result() if test_evaluator is not None else None,
            choice=choice,
            epochs_trained=epochs,
        )
        if test_evaluator is not None:
            # Measured after every choice is made: the intervals describe the test figures only.
            intervals = bootstrap_intervals(
                test_evaluator, threshold=evaluation.suggested_threshold, seed=config.seed
            )
            evaluation = evaluation.model_copy(update={"intervals": intervals})
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
        if evaluation.selection is not None:
            logger.info("Selection: %s", evaluation.selection.summary)

    def _split_outputs(self, split: SplitName) -> SplitOutputs:
        return SplitOutputs(
            split=split,
            paths=self.paths,
            class_names=list(self.config.classes),
            score_floor=self.config.score_floor,
        )
