"""Names and small types shared by every contract."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

#: A project name becomes part of S3 keys, DynamoDB keys, job names and IAM resource ARNs.
PROJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
#: Dataset and request names become one S3 key segment; dots are allowed, ".." is not.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"

#: Python's `$` also matches before a trailing newline: every check in Python uses `fullmatch`.
#: (pydantic's `pattern` runs on the Rust regex engine, whose `$` is the end of the text.)
_NAME_RE = re.compile(NAME_PATTERN)


VersionNumber = Annotated[int, Field(ge=1, le=999_999)]
#: A SageMaker instance type (`ml.g5.xlarge`), for trainings and analyses alike.
InstanceType = Annotated[str, Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")]

ModelType = Literal["instance", "semantic"]


def is_item_name(value: str) -> bool:
    """True when `value` may be used as a dataset or request name."""
    return bool(_NAME_RE.fullmatch(value)) and ".." not in value


class Preset(StrEnum):
    """Named model builders; the trainer registers one builder per value."""

    TINY = "tiny"
    DINOV2_SMALL = "dinov2-small"
    SAM_VIT_BASE = "sam-vit-base"


class LifecycleStatus(StrEnum):
    """The statuses of something a SageMaker job carries out: `queued`, one running status (each
    kind names its own), then an end: `completed`, `failed` or `stopped`."""

    @property
    def rank(self) -> int:
        """Order of the lifecycle (queued 0, running 1, ended 2): a status never moves to a lower rank."""
        return {"queued": 0, "completed": 2, "failed": 2, "stopped": 2}.get(self.value, 1)

    @property
    def terminal(self) -> bool:
        return self.rank == 2


class VersionStatus(LifecycleStatus):
    QUEUED = "queued"
    TRAINING = "training"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"


SplitName = Literal["train", "test"]
"""The two sides of a frozen split: the one name for them in keys, contracts, the API and the trainer."""
SPLIT_NAMES: tuple[SplitName, ...] = ("train", "test")


def split_name(value: str) -> SplitName:
    """`value` as a `SplitName`; ValueError for anything else (a key or path segment read back)."""
    for name in SPLIT_NAMES:
        if value == name:
            return name
    raise ValueError(f"{value!r} is not a split name ({', '.join(SPLIT_NAMES)}).")
