"""The contract between the Lambdas and the training container.

Both sides import this one module: the submit Lambda writes the hyperparameters and split
manifests, the trainer reads them and writes evaluation, predictions and `model.json`, and the
job-state Lambda reads those back. `tests/fixtures/hyperparameters.json` pins the hyperparameters.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from segpipe.models.common import ModelType, Preset, SplitName
from segpipe.models.contract import Contract
from segpipe.models.presets import PRESETS
from segpipe.models.selection import VALIDATION_FRACTION

# --- Hyperparameters ---------------------------------------------------------------------------

#: How an instance model separates touching objects: flows towards object centres followed by
#: their dynamics (Cellpose-style), or a distance-to-boundary map split by a seeded watershed.
InstanceHead = Literal["flow", "distance"]

#: Score thresholds at which every metric is computed; the viewer's slider moves along them.
THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
#: Objects scored below this are not written to predictions at all.
SCORE_FLOOR = 0.05


def _json_list(value: Any) -> Any:
    """SageMaker passes every hyperparameter as a string; lists travel as JSON text."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError("must be a JSON list of strings") from exc
    return value


ClassList = Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_json_list)]


class TrainingConfig(Contract):
    """Hyperparameters of one training job, as the console shows them and the trainer parses them."""

    model_config = ConfigDict(extra="forbid")

    model_type: ModelType = Field(description="instance or semantic")
    classes: ClassList = Field(
        min_length=1, description="Class names; index i+1 in the model's output is classes[i]"
    )
    preset: Preset = Field(description="Encoder and decoder preset")
    epochs: int = Field(ge=1, le=2000)
    tile_size: int = Field(ge=64, le=2048, description="Training tile edge in pixels")
    seed: int = Field(ge=0)
    learning_rate: float | None = Field(
        default=None,
        gt=0,
        description="Peak learning rate of the decoder and heads; unset takes the preset's "
        "(segpipe.models.presets)",
    )
    encoder_lr_scale: float = Field(
        default=0.1, gt=0, le=1, description="Encoder learning rate = scale x peak"
    )
    weight_decay: float = Field(default=0.05, ge=0)
    batch_size: int = Field(default=8, ge=1)
    warmup_fraction: float = Field(default=0.05, ge=0, lt=1, description="Share of steps spent warming up")
    steps_per_epoch: int | None = Field(
        default=None, ge=1, description="Optimizer steps per epoch; default from the training pixel count"
    )
    early_stopping_patience: int = Field(
        default=10, ge=0, description="Epochs without improvement; 0 disables"
    )
    weight_average_epochs: float = Field(
        default=0.0,
        ge=0,
        le=50,
        description="Half-life in epochs of the moving average of the weights that the held-out "
        "images score and the finished model keeps; 0 keeps the trained weights as they are",
    )
    validation_fraction: float = Field(
        default=VALIDATION_FRACTION,
        ge=0,
        lt=1,
        description="Share of training groups held out for early stopping",
    )
    min_object_area: int = Field(
        default=16, ge=0, description="Predicted objects smaller than this are dropped"
    )
    instance_head: InstanceHead | None = Field(
        default=None,
        description="Instance models: 'flow' (flows to object centres) or 'distance' (distance map and "
        "watershed); unset takes the trainer's default",
    )
    test_time_flips: bool | None = Field(
        default=None,
        description="Predict every tile in its eight flips and quarter turns and average the outputs "
        "(held-out, test and analysis images alike; 8x the inference work); unset takes the preset's",
    )
    score_floor: float = Field(default=SCORE_FLOOR, ge=0, lt=1)
    project: str | None = Field(default=None, description="For logs only")
    version: int | None = Field(default=None, description="For logs only")

    @property
    def peak_learning_rate(self) -> float:
        """The learning rate set, else the preset's default."""
        return self.learning_rate if self.learning_rate is not None else PRESETS[self.preset].learning_rate

    @property
    def flips_at_test(self) -> bool:
        """Whether predictions average the eight flips and turns: the setting, else the preset's."""
        if self.test_time_flips is not None:
            return self.test_time_flips
        return PRESETS[self.preset].test_time_flips

    @classmethod
    def from_hyperparameters(cls, hyperparameters: dict[str, str]) -> TrainingConfig:
        """Parse SageMaker's string map (`/opt/ml/input/config/hyperparameters.json`)."""
        return cls.model_validate(hyperparameters)

    def to_hyperparameters(self) -> dict[str, str]:
        """The string map SageMaker takes: readable values, lists as JSON."""
        out: dict[str, str] = {}
        for key, value in self.model_dump(mode="json", exclude_none=True).items():
            out[key] = json.dumps(value) if isinstance(value, list | dict) else str(value)
        return out


# --- Trainer outputs ---------------------------------------------------------------------------


class Metrics(Contract):
    """One row of the statistics table.

    Instance rows fill the matching fields, semantic rows the overlap ones."""

    model_config = ConfigDict(extra="forbid")

    tp: int | None = Field(default=None, description="Matched objects (IoU >= 0.5)")
    fp: int | None = Field(default=None, description="Predicted objects without a match")
    fn: int | None = Field(default=None, description="Ground-truth objects without a match")
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    panoptic_quality: float | None = None
    mean_matched_iou: float | None = None
    iou: float | None = Field(
        default=None, description="Semantic: intersection over union of the class region"
    )
    dice: float | None = None
    pixel_accuracy: float | None = None
    predicted_objects: int | None = Field(default=None, description="Objects shown at this threshold")


class ThresholdPoint(Contract):
    threshold: float
    overall: Metrics
    per_class: dict[str, Metrics] = Field(default_factory=dict)


class AveragePrecision(Contract):
    ap50: float | None = Field(default=None, description="COCO AP at IoU 0.5")
    ap: float | None = Field(default=None, description="COCO AP averaged over IoU 0.5:0.95")


class SplitEvaluation(Contract):
    images: int = Field(description="Images evaluated")
    objects: int = Field(default=0, description="Ground-truth objects (instance) or class regions (semantic)")
    sweep: list[ThresholdPoint] = Field(description="Metrics at each threshold of THRESHOLDS")
    ap_overall: AveragePrecision | None = Field(default=None, description="Instance only")
    ap_per_class: dict[str, AveragePrecision] = Field(default_factory=dict)

    def at(self, threshold: float) -> ThresholdPoint:
        """The sweep point nearest to `threshold`."""
        return min(self.sweep, key=lambda point: abs(point.threshold - threshold))


ChoiceSource = Literal["validation", "train"]
#: Where a final model's epoch count came from: the validation images, or the configuration.
EpochsSource = Literal["validation", "config"]


class LevelScore(Contract):
    """One candidate split level and the validation images' score under it (best F1 at IoU 0.5)."""

    level: float
    score: float


class Selection(Contract):
    """How every choice behind a version was made, all on training images: the test set only measures.

    `holdout`: validation groups held out of training chose the epoch count and the thresholds, and
    the model trained on the other images is the final one (many groups: little is lost).
    `refit`: the same choices on the held-out groups, then a fresh model trained on every training
    image is the final one (few groups: no training image is wasted), for as many epochs as the
    first phase ran: the configured count, or fewer where early stopping ended it (`epochs_from`).
    `none`: nothing could be held out (one group, or validation_fraction 0): the configured epochs
    are trained on every training image and the thresholds are chosen on the training images.
    """

    method: Literal["holdout", "refit", "none"] = Field(description="How the final model was chosen")
    validation_images: list[str] = Field(
        default_factory=list, description="Training images held out for the choices (file names)"
    )
    validation_groups: int = Field(default=0, description="Groups those images belong to")
    epochs_from: EpochsSource = Field(
        description="validation: set by the validation images (a holdout's best epoch; where early "
        "stopping ended a refit's first phase); config: the configured epochs"
    )
    chosen_epoch: int | None = Field(
        default=None, description="Epoch with the best validation score (None without validation)"
    )
    final_images: int = Field(description="Training images the final model was trained on")
    final_epochs: int = Field(description="Epochs the final model was trained for")
    threshold_from: ChoiceSource = Field(
        description="Images the overall suggested threshold was chosen on: the held-out validation "
        "images, or the training images when none were held out"
    )
    thresholds_from: dict[str, ChoiceSource] = Field(
        default_factory=dict,
        description="The same per class; a class without validation objects falls back to train",
    )
    split_level: float | None = Field(
        default=None,
        description="Instance models: the level at which touching objects are split (the distance "
        "head's seed level, the flow head's sink flow), chosen on the validation images; None: the "
        "head's default (nothing held out, or a semantic model)",
    )
    split_levels: list[LevelScore] = Field(
        default_factory=list, description="Every candidate level and its validation score"
    )
    summary: str = Field(default="", description="One sentence for people")


class Interval(Contract):
    """A point estimate with its bootstrap confidence interval; None where the metric is undefined."""

    estimate: float | None = Field(default=None, description="The metric on the whole split")
    low: float | None = Field(default=None, description="Lower bound ((1 - confidence) / 2 percentile)")
    high: float | None = Field(default=None, description="Upper bound ((1 + confidence) / 2 percentile)")


class ThresholdIntervals(Contract):
    """Intervals of the metrics at one score threshold."""

    threshold: float
    metrics: dict[str, Interval] = Field(
        default_factory=dict,
        description="By metric name, as in Metrics (instance: precision, recall, f1, panoptic_quality; "
        "semantic: iou, dice, pixel_accuracy); the headline adds ap50 and ap for instance models",
    )


class Bootstrap(Contract):
    """Bootstrap confidence intervals of one split's metrics (percentile method).

    Each of `draws` resamples draws the split's images with replacement, as many as it has, from
    numpy's default_rng(seed); a metric is recomputed on each resample from the images' counts
    (micro averages, AP from the pooled detections) and the interval is the central `confidence`
    share of those values. Images, not objects, are resampled: objects of one image are not
    independent.
    """

    split: SplitName = Field(description="The split resampled")
    method: Literal["percentile"] = "percentile"
    draws: int = Field(ge=1, description="Resamples")
    seed: int = Field(description="Seed of numpy.random.default_rng")
    confidence: float = Field(gt=0, lt=1, description="Coverage of the intervals, 0.95 for 95 %")
    images: int = Field(description="Images in the split (and in each resample)")
    headline: ThresholdIntervals = Field(description="At the suggested threshold")
    sweep: list[ThresholdIntervals] = Field(
        default_factory=list,
        description="At every threshold (instance: precision, recall, f1; semantic: iou, dice), for bands",
    )


class Evaluation(Contract):
    """`/opt/ml/output/data/evaluation.json`."""

    model_type: ModelType
    classes: list[str]
    thresholds: list[float] = Field(default_factory=lambda: list(THRESHOLDS))
    suggested_threshold: float = Field(
        ge=0, le=1, description="Maximises F1 (instance) or mean IoU (semantic)"
    )
    suggested_thresholds: dict[str, float] = Field(default_factory=dict, description="The same, per class")
    suggested_from: Literal["validation", "test", "train"] = Field(
        description="Images the suggestion was tuned on: held-out training images (validation), or the "
        "training images when none were held out; 'test' only in evaluations of older trainers"
    )
    train: SplitEvaluation
    test: SplitEvaluation | None = None
    validation: SplitEvaluation | None = Field(
        default=None, description="The held-out training images, by the model that chose on them"
    )
    epochs_trained: int | None = None
    best_epoch: int | None = None
    selection: Selection | None = Field(
        default=None, description="How the choices were made (newer trainers)"
    )
    intervals: Bootstrap | None = Field(
        default=None,
        description="Bootstrap intervals of the test metrics (no test set, or an older trainer: None)",
    )


class PredictedObject(Contract):
    category: str = Field(description="Class name")
    score: float = Field(ge=0, le=1, description="Mean probability of the class over the object's pixels")
    segmentation: list[list[float]] = Field(description="COCO polygon rings in image pixels")
    bbox: list[float] = Field(min_length=4, max_length=4, description="[x, y, width, height]")
    area: float = Field(ge=0, description="Pixels")


class ImagePredictions(Contract):
    """`/opt/ml/output/data/predictions/{split}/{stem}.json`."""

    file_name: str
    width: int
    height: int
    split: SplitName | None = None
    preview: str | None = Field(default=None, description="Preview PNG file name under previews/")
    objects: list[PredictedObject] = Field(default_factory=list)


class Normalization(Contract):
    method: Literal["percentile"] = "percentile"
    low: float = Field(default=1.0, description="Lower percentile mapped to 0")
    high: float = Field(default=99.8, description="Upper percentile mapped to 1")
    per_channel: bool = True


class ModelCard(Contract):
    """`/opt/ml/model/model.json`: what inference needs besides the weights."""

    preset: Preset
    model_type: ModelType
    classes: list[str]
    tile_size: int
    in_channels: int = Field(description="Channels the encoder takes")
    normalization: Normalization = Field(default_factory=Normalization)
    suggested_threshold: float
    suggested_thresholds: dict[str, float] = Field(default_factory=dict)
    min_object_area: int = 16
    instance_head: InstanceHead = Field(
        default="distance",
        description="Instance models: the head the weights were trained with, which fixes the "
        "post-processing (cards of older trainers are distance-map models)",
    )
    test_time_flips: bool = Field(
        default=False,
        description="Whether the model predicts each tile in its eight flips and quarter turns, averaged, "
        "as its threshold was tuned (cards of older trainers do not)",
    )
    split_level: float | None = Field(
        default=None,
        description="Instance models: the level at which touching objects are split, as chosen on "
        "the validation images (`Selection.split_level`); None: the head's default (older cards)",
    )
    weights: str = Field(default="model.safetensors", description="Weights file beside model.json")
    epochs_trained: int | None = None
    config: dict[str, Any] = Field(default_factory=dict, description="The resolved training config")


class Progress(Contract):
    """`/opt/ml/checkpoints/progress.json`: synced to S3 while the job runs, read by the API."""

    epoch: int = Field(ge=0)
    epochs: int = Field(ge=1)
    train_loss: float | None = None
    val_score: float | None = None
    updated_at: str | None = None
    phase: Literal["training", "evaluating", "done"] = "training"


#: The characters of an output stem: the trainer's file names, S3 keys and the API's `{stem}`.
STEM_CHARACTERS = "[A-Za-z0-9._-]"
#: The longest stem the API's `{stem}` path parameter takes.
MAX_STEM_LENGTH = 255
#: A stem as the API accepts it: what `prediction_stem` returns, at most `MAX_STEM_LENGTH` long.
STEM_PATTERN = rf"^[A-Za-z0-9_-]{STEM_CHARACTERS}{{0,{MAX_STEM_LENGTH - 1}}}$"
_UNSAFE = re.compile(rf"[^{STEM_CHARACTERS[1:-1]}]+")


def prediction_stem(file_name: str) -> str:
    """The file stem used for an image's prediction and preview files.

    Folders become `__`, characters outside `[A-Za-z0-9._-]` become `_`, the extension goes:
    `slide 1/tile.ome.tif` -> `slide_1__tile.ome`.
    """
    parts = file_name.split("/")
    stem = parts[-1].rsplit(".", 1)[0] if "." in parts[-1] else parts[-1]
    return "__".join(_UNSAFE.sub("_", part) for part in [*parts[:-1], stem]).lstrip(".") or "image"


class SplitInfo(Contract):
    """Written in the `info.segpipe` field of each split manifest."""

    split: SplitName
    project: str
    version: int
    dataset: str
    strategy: str
    seed: int | None = None
    classes: list[str]

    @model_validator(mode="after")
    def _classes_present(self) -> SplitInfo:
        if not self.classes:
            raise ValueError("a split names at least one class")
        return self
