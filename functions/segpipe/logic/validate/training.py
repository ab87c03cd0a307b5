"""The training settings a request resolves to, and the rules for its `base`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from segpipe.logic.validate.context import Training
from segpipe.logic.validate.issues import Issues
from segpipe.models.common import Preset, VersionStatus
from segpipe.models.report import ErrorCode, WarningCode
from segpipe.models.request import TrainingRequest
from segpipe.models.version import ModelVersion

BaseLookup = Callable[[int], ModelVersion | None]


@dataclass(frozen=True)
class TrainingDefaults:
    preset: Preset  # used when the request names none
    epochs: int
    tile_size: int


def resolve_training(
    request: TrainingRequest, *, defaults: TrainingDefaults, base_lookup: BaseLookup | None
) -> tuple[Training, Issues]:
    """The request's settings over `defaults`, and what is wrong with its `base`."""
    preset, found = check_base(request, base_lookup=base_lookup)
    training = Training(
        preset=preset or defaults.preset,
        epochs=request.training.epochs or defaults.epochs,
        tile_size=request.training.tile_size or defaults.tile_size,
    )
    return training, found


def check_base(request: TrainingRequest, *, base_lookup: BaseLookup | None) -> tuple[Preset | None, Issues]:
    """The preset implied by `base` (None: use the default), and what makes the base unusable."""
    found = Issues()
    if request.base is None:
        return None, found
    if (preset := request.base_preset()) is not None:
        return preset, found
    number = request.base_version()
    if number is None or number < 1:
        presets = [preset.value for preset in Preset]
        found.error(
            ErrorCode.UNKNOWN_BASE,
            f"`base` {request.base!r} is neither a preset ({', '.join(presets)}) "
            "nor a version such as 3 or 'v3'.",
            base=request.base,
            presets=presets,
        )
        return None, found
    if base_lookup is None:
        return None, found  # offline: the version cannot be checked here
    base = base_lookup(number)
    if base is None:
        found.error(
            ErrorCode.UNKNOWN_BASE,
            f"Version {number} does not exist in this project. "
            "Name an existing version or a preset in `base`.",
            base=request.base,
            version=number,
        )
        return None, found
    found.extend(check_base_version(request, base=base))
    named = base.details.preset
    return (Preset(named) if named is not None and named in Preset._value2member_map_ else None), found


def check_base_version(request: TrainingRequest, *, base: ModelVersion) -> Issues:
    """A base version must be completed and of the request's model type; other classes are a warning."""
    found = Issues()
    if base.status is not VersionStatus.COMPLETED:
        found.error(
            ErrorCode.BASE_NOT_USABLE,
            f"Version {base.version} is {base.status.value}, so it has no weights to start from. "
            "Choose a completed version as `base`.",
            version=base.version,
            status=base.status.value,
        )
    if base.model_type != request.model_type:
        found.error(
            ErrorCode.BASE_NOT_USABLE,
            f"Version {base.version} is a {base.model_type} model; "
            f"this request trains a {request.model_type} model. "
            "Choose a base of the same model type, or a preset.",
            version=base.version,
            base_model_type=base.model_type,
            model_type=request.model_type,
        )
    if list(base.classes) != list(request.classes):
        found.warn(
            WarningCode.BASE_CLASSES_DIFFER,
            f"Version {base.version} was trained on other classes (or in another order); "
            "its class head is re-initialised and only the encoder and decoder carry over.",
            base_classes=list(base.classes),
            classes=list(request.classes),
            added=[name for name in request.classes if name not in base.classes],
            removed=[name for name in base.classes if name not in request.classes],
        )
    return found
