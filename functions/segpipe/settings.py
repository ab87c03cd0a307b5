"""Typed environment settings, one model per function, checked at cold start."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

_INSTANCE_TYPE = re.compile(r"ml\.[a-z0-9]+\.[a-z0-9]+")

#: Instance types a deployment allows unless its AllowedInstanceTypes parameter says otherwise
#: (template.yaml repeats this default): single-GPU and 4-GPU hosts of the price table.
DEFAULT_ALLOWED_INSTANCE_TYPES = (
    "ml.g4dn.xlarge",
    "ml.g4dn.2xlarge",
    "ml.g5.xlarge",
    "ml.g5.2xlarge",
    "ml.g5.4xlarge",
    "ml.g5.12xlarge",
    "ml.g6.xlarge",
    "ml.p3.2xlarge",
)


class _Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CommonSettings(_Settings):
    TABLE_NAME: str = Field(min_length=1, description="The registry table")
    DATA_BUCKET: str = Field(min_length=1, description="The data bucket")
    POWERTOOLS_SERVICE_NAME: str = "segpipe"
    STACK_NAME: str = Field(default="segpipe", description="Tags jobs so each stack ingests only its own")


class SubmitSettings(CommonSettings):
    TRAINING_IMAGE_URI: str = Field(min_length=1, description="ECR URI of the training image")
    SAGEMAKER_ROLE_ARN: str = Field(min_length=1, description="Execution role passed to training jobs")
    DEFAULT_PRESET: str = "sam-vit-base"
    DEFAULT_EPOCHS: int = 50
    DEFAULT_TILE_SIZE: int = 512
    VOLUME_SIZE_GB: int = 50
    MAX_BODY_BYTES: int = 256 * 1024
    ALLOWED_INSTANCE_TYPES: tuple[str, ...] = Field(
        default=DEFAULT_ALLOWED_INSTANCE_TYPES,
        min_length=1,
        description="Comma-separated SageMaker instance types a request may name",
    )
    MAX_INSTANCE_HOURS: float = Field(
        default=48.0, gt=0, description="Most instance_count x max_hours one training may ask for"
    )
    MAX_RUNNING_TRAININGS: int = Field(
        default=4, ge=1, description="Most trainings queued or training at once in one project"
    )
    MAX_ANNOTATIONS_BYTES: int = Field(
        default=512 * 1024 * 1024,
        ge=1024,
        description="Largest annotations.json validated (memory grows about 10x the file size)",
    )

    @field_validator("ALLOWED_INSTANCE_TYPES", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(item.strip() for item in value.split(",") if item.strip())
        for item in value:
            if not isinstance(item, str) or not _INSTANCE_TYPE.fullmatch(item):
                raise ValueError(f"{item!r} is not a SageMaker instance type such as ml.g5.xlarge")
        return value


class ApiSettings(SubmitSettings):
    PRESIGN_EXPIRES_SECONDS: int = 3600
    AWS_REGION: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"),
        description="The function's region (Lambda sets AWS_REGION): the data bucket's region",
    )
    AWS_ENDPOINT_URL_S3: str | None = Field(
        default=None, description="A custom S3 endpoint (the local stack's moto server); unset on AWS"
    )
    AWS_ENDPOINT_URL: str | None = Field(
        default=None, description="A custom endpoint for every AWS service; unset on AWS"
    )


class JobStateSettings(CommonSettings):
    pass


S = TypeVar("S", bound=_Settings)


def load_settings(model: type[S], environ: Mapping[str, str] | None = None) -> S:
    """Read settings from the environment; a missing variable fails the cold start loudly."""
    source = os.environ if environ is None else environ
    return model.model_validate(dict(source))
