"""Reading and steering model versions: the model table, details, statistics, predictions,
the analysis threshold, activation and stopping."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from segpipe.dal.interfaces import ArtifactStore, ModelRegistry, TrainingJobs
from segpipe.errors import (
    ObjectNotFound,
    UnknownClass,
    VersionNotCompleted,
    VersionNotFound,
    VersionNotRunning,
)
from segpipe.models import keys
from segpipe.models.api import (
    MetricsView,
    ModelSummary,
    ModelTable,
    PredictionImage,
    PredictionIndex,
    PredictionsPage,
    SplitMetrics,
)
from segpipe.models.common import SplitName, VersionStatus
from segpipe.models.trainer_io import THRESHOLDS, ImagePredictions, Progress, SplitEvaluation
from segpipe.models.version import ModelVersion


@dataclass(frozen=True)
class ModelsDeps:
    registry: ModelRegistry
    artifacts: ArtifactStore
    jobs: TrainingJobs
    clock: Callable[[], datetime]
    presign_seconds: int = 3600
    #: Evaluations of completed versions, which never change once the version is completed
    #: (ingestion ends before the move to completed, and later events are ignored).
    evaluations: MutableMapping[tuple[str, int], dict[str, SplitEvaluation]] = field(default_factory=dict)


class BoundedCache(OrderedDict[tuple[str, int], dict[str, SplitEvaluation]]):
    """A small least-recently-used mapping, kept across invocations of a warm function."""

    def __init__(self, size: int = 64) -> None:
        super().__init__()
        self._size = size

    def __getitem__(self, key: tuple[str, int]) -> dict[str, SplitEvaluation]:
        value = super().__getitem__(key)
        self.move_to_end(key)
        return value

    def __setitem__(self, key: tuple[str, int], value: dict[str, SplitEvaluation]) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self._size:
            self.popitem(last=False)


def _version(project: str, number: int, deps: ModelsDeps) -> ModelVersion:
    found = deps.registry.get_version(project, number)
    if found is None:
        raise VersionNotFound(
            f"Project {project!r} has no version {number}.", project=project, version=number
        )
    return found


def _require_completed(version: ModelVersion, action: str) -> None:
    if version.status is not VersionStatus.COMPLETED:
        raise VersionNotCompleted(
            f"Version {version.version} is {version.status.value}; only a completed version can be {action}.",
            status=version.status.value,
        )


def _progress(version: ModelVersion, deps: ModelsDeps) -> Progress | None:
    if version.status is not VersionStatus.TRAINING:
        return None
    try:
        return Progress.model_validate_json(
            deps.artifacts.get_bytes(keys.progress_key(version.project, version.version))
        )
    except (ObjectNotFound, ValidationError):
        return None


def list_models(project: str, *, active_only: bool, deps: ModelsDeps) -> ModelTable:
    versions = deps.registry.list_versions(project, active_only=active_only)
    rows = [ModelSummary.from_record(v, progress=_progress(v, deps)) for v in versions]
    return ModelTable(project=project, models=rows)


def get_model(project: str, number: int, *, deps: ModelsDeps) -> ModelVersion:
    version = _version(project, number, deps)
    return version.model_copy(update={"progress": _progress(version, deps)})


def _split_evaluation(stored: dict[str, object], deps: ModelsDeps) -> SplitEvaluation:
    if "s3_key" in stored:
        return SplitEvaluation.model_validate_json(deps.artifacts.get_bytes(str(stored["s3_key"])))
    return SplitEvaluation.model_validate(stored)


def _evaluations(project: str, number: int, deps: ModelsDeps) -> dict[str, SplitEvaluation]:
    """Evaluation per split of a completed version, read once per warm function."""
    key = (project, number)
    if key not in deps.evaluations:
        stored = deps.registry.get_metrics(project, number)
        deps.evaluations[key] = {split: _split_evaluation(data, deps) for split, data in stored.items()}
    return deps.evaluations[key]


def get_metrics(
    project: str, number: int, *, threshold: float | None, sweep: bool, deps: ModelsDeps
) -> MetricsView:
    version = _version(project, number, deps)
    _require_completed(version, "measured")
    evaluations = _evaluations(project, number, deps)
    at = (
        threshold
        if threshold is not None
        else (version.analysis_threshold or version.suggested_threshold or 0.5)
    )
    splits = {
        split: SplitMetrics.from_record(result, at=result.at(at), sweep=result.sweep if sweep else None)
        for split, result in evaluations.items()
    }
    used = splits["test"].at.threshold if "test" in splits else splits["train"].at.threshold if splits else at
    return MetricsView.from_record(
        version,
        threshold=used,
        thresholds=list(THRESHOLDS),
        train=splits.get("train"),
        test=splits.get("test"),
    )


def predictions_page(
    project: str, number: int, *, split: SplitName, offset: int, limit: int, deps: ModelsDeps
) -> PredictionsPage:
    version = _version(project, number, deps)
    _require_completed(version, "reviewed")
    try:
        index = PredictionIndex.model_validate_json(
            deps.artifacts.get_bytes(keys.predictions_index_key(project, number))
        )
    except ObjectNotFound:
        index = PredictionIndex(images=[])
    entries = [entry for entry in index.images if entry.split == split]
    page = entries[offset : offset + limit]
    images = [
        PredictionImage.from_record(
            entry,
            preview_url=(
                deps.artifacts.presign_get(
                    keys.preview_key(project, number, entry.preview), deps.presign_seconds
                )
                if entry.preview
                else None
            ),
            predictions_url=f"/projects/{project}/models/{number}/predictions/{split}/{entry.stem}",
        )
        for entry in page
    ]
    return PredictionsPage(
        project=project, version=number, split=split, total=len(entries), offset=offset, images=images
    )


def image_predictions(
    project: str, number: int, *, split: SplitName, stem: str, deps: ModelsDeps
) -> ImagePredictions:
    version = _version(project, number, deps)
    _require_completed(version, "reviewed")
    try:
        data = deps.artifacts.get_bytes(keys.prediction_key(project, number, split, stem))
    except ObjectNotFound as error:
        raise ObjectNotFound(
            f"Version {number} has no predictions for {stem!r} in {split}.", split=split, stem=stem
        ) from error
    return ImagePredictions.model_validate(json.loads(data))


def set_threshold(
    project: str, number: int, threshold: float | dict[str, float], *, deps: ModelsDeps
) -> ModelVersion:
    """Lock the analysis threshold: one score for every class, or the named classes' own (the others
    keep what they had). `analysis_threshold` is the one score while every class shares it."""
    version = _version(project, number, deps)
    _require_completed(version, "given an analysis threshold")
    per_class = locked_thresholds(version, threshold)
    shared = set(per_class.values())
    now = deps.clock()
    fields = {
        "analysis_threshold": shared.pop() if len(shared) == 1 else None,
        "analysis_thresholds": per_class,
        "updated_at": now.isoformat(),
    }
    if not deps.registry.update_fields(project, number, fields, require_status=VersionStatus.COMPLETED):
        raise VersionNotCompleted("The version changed status meanwhile; reload and try again.")
    return _version(project, number, deps)


def locked_thresholds(version: ModelVersion, threshold: float | dict[str, float]) -> dict[str, float]:
    """Every class's analysis threshold once `threshold` is locked on `version`."""
    if not isinstance(threshold, dict):
        return dict.fromkeys(version.classes, threshold)
    unknown = sorted(name for name in threshold if name not in version.classes)
    if unknown:
        raise UnknownClass(
            f"Version {version.version} has no class {', '.join(map(repr, unknown))}; its classes are "
            f"{', '.join(map(repr, version.classes))}.",
            unknown=", ".join(unknown),
        )

    def current(name: str) -> float:
        for value in (
            version.analysis_thresholds.get(name),
            version.analysis_threshold,
            version.suggested_thresholds.get(name),
            version.suggested_threshold,
        ):
            if value is not None:
                return value
        return 0.5

    return {name: threshold.get(name, current(name)) for name in version.classes}


def set_active(project: str, number: int, active: bool, *, deps: ModelsDeps) -> ModelVersion:
    version = _version(project, number, deps)
    if active:
        _require_completed(version, "activated")
    if not deps.registry.set_active(project, number, active):
        raise VersionNotCompleted("The version changed status meanwhile; reload and try again.")
    return _version(project, number, deps)


def stop_training(project: str, number: int, *, deps: ModelsDeps) -> ModelVersion:
    version = _version(project, number, deps)
    if version.status.terminal:
        raise VersionNotRunning(
            f"Version {number} is {version.status.value}; only a queued or training version can be stopped.",
            status=version.status.value,
        )
    deps.jobs.stop(version.job_name)
    deps.registry.update_fields(
        project, number, {"stop_requested": True, "updated_at": deps.clock().isoformat()}
    )
    return _version(project, number, deps)
