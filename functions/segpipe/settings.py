"""Typed environment settings, one model per function, checked at cold start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field


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
