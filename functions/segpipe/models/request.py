"""The training request: one body for `POST /projects/{p}/trainings` and for an uploaded request file."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from segpipe.models.common import InstanceType, ModelType, Preset, is_item_name
from segpipe.models.contract import Contract


class _Strict(Contract):
    model_config = ConfigDict(extra="forbid")


class NoTestSet(_Strict):
    strategy: Literal["none"] = Field(description="Train on every image; no test set")


class FractionTestSet(_Strict):
    strategy: Literal["fraction"] = Field(description="A stable random fraction of images (or groups)")
    fraction: float = Field(default=0.2, gt=0, lt=1, description="Share of images or groups held out")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Changing the seed draws another test set")


class ImagesTestSet(_Strict):
    strategy: Literal["images"] = Field(description="An explicit list of test images")
    images: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        min_length=1, max_length=100_000, description="file_name of each test image"
    )


TestSet = Annotated[NoTestSet | FractionTestSet | ImagesTestSet, Field(discriminator="strategy")]


class TrainingOverrides(_Strict):
    """Optional trainer settings; anything left out takes the preset's default."""

    epochs: int | None = Field(default=None, ge=1, le=2000, description="Passes over the training tiles")
    tile_size: int | None = Field(default=None, ge=64, le=2048, description="Training tile edge in pixels")
    learning_rate: float | None = Field(
        default=None, gt=0, le=1, description="Peak learning rate of the decoder"
    )
    batch_size: int | None = Field(default=None, ge=1, le=256)
    early_stopping_patience: int | None = Field(
        default=None, ge=0, le=1000, description="Epochs without improvement before stopping; 0 disables"
    )
    min_object_area: int | None = Field(
        default=None, ge=0, le=100_000, description="Smallest object kept, in pixels"
    )

    @field_validator("tile_size")
    @classmethod
    def _multiple_of_32(cls, value: int | None) -> int | None:
        if value is not None and value % 32:
            raise ValueError("tile_size must be a multiple of 32")
        return value


class ComputeOptions(_Strict):
    instance_type: InstanceType = Field(
        default="ml.g5.xlarge", description="SageMaker training instance type"
    )
    instance_count: int = Field(
        default=1, ge=1, le=16, description="Hosts; more than one trains with torchrun"
    )
    spot: bool = Field(
        default=True, description="Managed spot training (cheaper, may be interrupted and resumed)"
    )
    max_hours: float = Field(default=8.0, gt=0, le=120, description="Longest the job may run")


_VERSION_REF = re.compile(r"^v?(\d{1,6})$")
_DATASET_KEY = re.compile(r"^projects/(?P<project>[^/]+)/datasets/(?P<name>[^/]+)/(?P<file>[^/]+\.json)$")


class TrainingRequest(_Strict):
    label: str = Field(
        min_length=1, max_length=120, description="Shown in the model table to tell versions apart"
    )
    dataset: str = Field(
        min_length=1,
        max_length=400,
        description="Dataset name in the project, or the S3 key of its annotations file",
        examples=["nuclei-2024", "projects/lab/datasets/nuclei-2024/annotations.json"],
    )
    model_type: ModelType = Field(description="instance: separate objects; semantic: class regions")
    classes: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        max_length=100, description="Category names to include; annotations of other classes are ignored"
    )
    test_set: TestSet = Field(
        default_factory=lambda: FractionTestSet(strategy="fraction"),
        description="How test images are chosen; frozen at submission",
    )
    base: str | int | None = Field(
        default=None, description="A preset name, or a previous version (3 or 'v3') to continue training from"
    )
    training: TrainingOverrides = Field(default_factory=TrainingOverrides)
    compute: ComputeOptions = Field(default_factory=ComputeOptions)

    @field_validator("dataset")
    @classmethod
    def _dataset_name_or_key(cls, value: str) -> str:
        match = _DATASET_KEY.fullmatch(value)
        name = match["name"] if match else value
        file = match["file"] if match else "annotations.json"
        if not (is_item_name(name) and is_item_name(file)):
            raise ValueError(
                "dataset must be a name like 'nuclei-2024' or 'projects/P/datasets/NAME/annotations.json'"
            )
        return value

    @model_validator(mode="after")
    def _no_duplicate_classes(self) -> TrainingRequest:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must not repeat")
        return self

    # Derived views -----------------------------------------------------------------------------

    def dataset_location(self, project: str) -> tuple[str, str] | None:
        """(dataset name, annotations file name), or None when the key names another project."""
        match = _DATASET_KEY.fullmatch(self.dataset)
        if match is None:
            return self.dataset, "annotations.json"
        if match["project"] != project:
            return None
        return match["name"], match["file"]

    def base_version(self) -> int | None:
        """The version to continue from, when `base` names one."""
        if isinstance(self.base, int):
            return self.base
        if isinstance(self.base, str) and (match := _VERSION_REF.fullmatch(self.base)):
            return int(match[1])
        return None

    def base_preset(self) -> Preset | None:
        """The preset named by `base`, when it names one."""
        if isinstance(self.base, str) and self.base in Preset._value2member_map_:
            return Preset(self.base)
        return None
