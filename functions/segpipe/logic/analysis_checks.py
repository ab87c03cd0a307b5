"""Check an analysis request before any compute: the version to run, its thresholds, the images.

`check_analysis` returns one report (errors block, warnings advise) with the details a person needs
before spending GPU money, and the version and image files the job would use. It shares the training
validation's machinery (the `validate` package: issues, header sniffing, output names, the compute guard,
the estimate warnings) and reads through the dal interfaces only. Pure Python; no AWS.

Rules worth knowing:

- The version: the one the request names, or else the project's only active version. A named
  version must exist (`unknown_version`), be completed with a model archive (`version_not_usable`)
  and be active (`version_not_active`): activation is how a lab says "this model is for use".
- Thresholds, per class: the request's override, else the version's locked threshold, else (a
  version nobody locked) its suggested threshold, chosen on held-out training images, with the
  warning `threshold_not_locked`. Refusing would add a step that changes nothing for a version its
  owner already activated; the report and the analysis item say which source each class used.
- Images: every PNG/JPEG/TIFF under the folder, recursively; other files are skipped with a
  warning. Up to `HEADER_SAMPLE` headers, evenly spread over the names, are read (a Lambda cannot
  read thousands in its time limit); sizes and megapixels are the sample's, scaled to the count.
- Channels: the model takes `in_channels` (the trainer's `config.json`, else the channel counts its
  validation saw). Images with that count, or with one a training image had, or grey images (the
  trainer repeats a single channel, `segpipe_trainer.images.match_channels`, as it did in training)
  are accepted. Anything else (RGB into a grey model, 2 channels into RGB) would have channels
  dropped or zero-filled silently, which gives numbers nobody should trust: `channels_differ`.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from segpipe.dal.interfaces import ArtifactStore, DatasetStore, ModelRegistry
from segpipe.errors import SegpipeError
from segpipe.logic import estimate
from segpipe.logic.validate import (
    HEADER_SAMPLE,
    ComputeRules,
    HeaderFindings,
    Issues,
    check_compute,
    check_estimate,
    check_output_names,
    examples,
    listing,
    read_headers,
    report_unreadable,
    spread_indices,
)
from segpipe.models import keys
from segpipe.models.analysis import IMAGE_SUFFIXES, AnalysisDetails, AnalysisReport, AnalysisRequest
from segpipe.models.common import Preset, VersionStatus
from segpipe.models.report import ErrorCode, WarningCode
from segpipe.models.version import ModelVersion

logger = logging.getLogger(__name__)

#: `image_sizes_far_from_training` when the typical side differs from the training images' by more.
SIZE_RATIO = 2.0
#: Threshold used only when a version has neither a locked nor a suggested one (never for trained ones).
FALLBACK_THRESHOLD = 0.5

ThresholdSource = Literal["locked", "request", "suggested"]


@dataclass(frozen=True)
class AnalysisSources:
    """Where the checks read: image folders (`keys.images_prefix`), artifacts, versions."""

    images: DatasetStore
    artifacts: ArtifactStore
    registry: ModelRegistry
    compute_rules: ComputeRules | None = None  # None: no compute guard (offline use)


@dataclass(frozen=True)
class AnalysisCheck:
    report: AnalysisReport
    version: ModelVersion | None  # the version to run; None when none could be chosen
    images: list[str]  # image files, relative to the folder, sorted

    @property
    def ok(self) -> bool:
        return self.report.ok and self.version is not None and bool(self.images)


def check_analysis(request: AnalysisRequest, *, project: str, sources: AnalysisSources) -> AnalysisCheck:
    """Check `request` against the project's versions and its images folder."""
    issues = Issues()
    details = AnalysisDetails(images_folder=request.images)
    if sources.compute_rules is not None:
        check_compute(request.compute, rules=sources.compute_rules, issues=issues, noun="analysis")
    version = _choose_version(request, project=project, registry=sources.registry, issues=issues)
    if version is not None:
        _resolve_thresholds(request, version=version, details=details, issues=issues)
    images = _list_images(request, project=project, store=sources.images, issues=issues)
    findings = HeaderFindings()
    if images:
        check_output_names(images, issues=issues, what="images", outputs="objects, masks")
        findings = _sample_headers(images, project=project, folder=request.images, store=sources.images)
        report_unreadable(findings, sampled=min(len(images), HEADER_SAMPLE), issues=issues)
        _describe_images(images, findings=findings, details=details)
        if version is not None:
            _check_channels(version, findings=findings, artifacts=sources.artifacts, issues=issues)
            _check_sizes(version, findings=findings, issues=issues)
    if version is not None and images:
        estimated = estimate.estimate_analysis(
            preset=_preset(version),
            megapixels=details.megapixels,
            instance_type=request.compute.instance_type,
            instance_count=request.compute.instance_count,
        )
        sampled = (
            f"megapixels: the mean of {len(findings.headers)} sampled image headers x {len(images)} images"
        )
        details.estimate = estimated.model_copy(update={"basis": f"{estimated.basis}; {sampled}"})
        check_estimate(
            request.compute,
            details.estimate,
            issues=issues,
            noun="analysis",
            fix="Raise max_hours, add instances (compute.instance_count), or analyse fewer images at once.",
        )
    report = AnalysisReport(
        ok=not issues.errors, errors=issues.errors, warnings=issues.warnings, details=details
    )
    return AnalysisCheck(report=report, version=version, images=images)


# --- The version ------------------------------------------------------------------------------


def _choose_version(
    request: AnalysisRequest, *, project: str, registry: ModelRegistry, issues: Issues
) -> ModelVersion | None:
    if request.version is not None:
        version = registry.get_version(project, request.version)
        if version is None:
            issues.error(
                ErrorCode.UNKNOWN_VERSION,
                f"Version {request.version} does not exist in project {project!r}. Name an existing, active "
                "version, or leave `version` out to use the project's active one.",
                version=request.version,
            )
            return None
        _check_usable(version, issues=issues)
        if not version.active:
            issues.error(
                ErrorCode.VERSION_NOT_ACTIVE,
                f"Version {version.version} is not active. Activate it (POST .../models/{version.version}/"
                "activate) once you have judged it, then analyse with it.",
                version=version.version,
            )
        return version
    active = registry.list_versions(project, active_only=True)
    if not active:
        issues.error(
            ErrorCode.NO_ACTIVE_VERSION,
            f"Project {project!r} has no active version to analyse with. Activate a completed version, or "
            "name one in `version`.",
        )
        return None
    if len(active) > 1:
        numbers = sorted(v.version for v in active)
        issues.error(
            ErrorCode.SEVERAL_ACTIVE_VERSIONS,
            f"Project {project!r} has {len(numbers)} active versions ({', '.join(map(str, numbers))}); name "
            "the one to run in `version`.",
            versions=numbers,
        )
        return None
    _check_usable(active[0], issues=issues)
    return active[0]


def _check_usable(version: ModelVersion, *, issues: Issues) -> None:
    if version.status is not VersionStatus.COMPLETED or not version.model_artifact:
        issues.error(
            ErrorCode.VERSION_NOT_USABLE,
            f"Version {version.version} is {version.status.value}"
            + ("" if version.status is not VersionStatus.COMPLETED else " but has no model archive")
            + ", so there is no trained model to run. Choose a completed version.",
            version=version.version,
            status=version.status.value,
        )


def _preset(version: ModelVersion) -> Preset:
    named = version.details.preset
    return Preset(named) if named is not None and named in Preset._value2member_map_ else Preset.SAM_VIT_BASE


# --- Thresholds -------------------------------------------------------------------------------


def _resolve_thresholds(
    request: AnalysisRequest, *, version: ModelVersion, details: AnalysisDetails, issues: Issues
) -> None:
    overrides = request.thresholds or {}
    unknown = sorted(name for name in overrides if name not in version.classes)
    if unknown:
        issues.error(
            ErrorCode.UNKNOWN_CLASS,
            f"`thresholds` names {listing(unknown)}, which version {version.version} does not detect (its "
            f"classes: {listing(version.classes)}). Override only the version's classes.",
            unknown=examples(unknown),
            classes=list(version.classes),
        )
    thresholds: dict[str, float] = {}
    sources: dict[str, ThresholdSource] = {}
    for name in version.classes:
        thresholds[name], sources[name] = _threshold_of(name, version=version, overrides=overrides)
    unlocked = [name for name, source in sources.items() if source == "suggested"]
    if unlocked:
        issues.warn(
            WarningCode.THRESHOLD_NOT_LOCKED,
            f"Version {version.version} has no locked analysis threshold for {listing(unlocked)}; its "
            "suggested threshold (chosen on held-out training images) is used. Lock one (PUT .../models/"
            f"{version.version}/threshold) to decide it yourself.",
            classes=unlocked,
            thresholds={name: thresholds[name] for name in unlocked},
        )
    details.version = version.version
    details.model_type = version.model_type
    details.classes = list(version.classes)
    details.thresholds = thresholds
    details.threshold_sources = dict(sources)


def _threshold_of(
    name: str, *, version: ModelVersion, overrides: dict[str, float]
) -> tuple[float, ThresholdSource]:
    if name in overrides:
        return overrides[name], "request"
    if name in version.analysis_thresholds:
        return version.analysis_thresholds[name], "locked"
    if version.analysis_threshold is not None:
        return version.analysis_threshold, "locked"
    suggested = version.suggested_thresholds.get(name, version.suggested_threshold)
    return (FALLBACK_THRESHOLD if suggested is None else suggested), "suggested"


# --- Images -----------------------------------------------------------------------------------


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _list_images(request: AnalysisRequest, *, project: str, store: DatasetStore, issues: Issues) -> list[str]:
    prefix = keys.images_prefix(project, request.images)
    files = sorted(
        name for name in store.list_files(project, request.images) if name and not name.endswith("/")
    )
    images = [name for name in files if _is_image(name)]
    skipped = [name for name in files if not _is_image(name)]
    if not images:
        issues.error(
            ErrorCode.NO_IMAGES,
            f"No PNG, JPEG or TIFF files under {prefix}"
            + (f" (only {len(skipped)} other files)" if skipped else " (the folder is empty or missing)")
            + ". Upload the images there, or name the folder that holds them in `images`.",
            prefix=prefix,
            other_files=len(skipped),
        )
    elif skipped:
        issues.warn(
            WarningCode.FILES_SKIPPED,
            f"{len(skipped)} files under {prefix} are not PNG, JPEG or TIFF images and are skipped: "
            f"{listing(skipped)}.",
            files=len(skipped),
            examples=examples(skipped),
        )
    return images


def _sample_headers(
    images: Sequence[str], *, project: str, folder: str, store: DatasetStore
) -> HeaderFindings:
    sample = [images[index] for index in spread_indices(len(images), HEADER_SAMPLE)]
    return read_headers(sample, read_head=lambda name, nbytes: store.read_head(project, folder, name, nbytes))


def _describe_images(images: Sequence[str], *, findings: HeaderFindings, details: AnalysisDetails) -> None:
    headers = list(findings.headers.values())
    details.images = len(images)
    details.formats = dict(Counter(_format(name) for name in images))
    if not headers:
        return
    details.channels = sorted({header.channels for header in headers})
    details.min_width = min(header.width for header in headers)
    details.max_width = max(header.width for header in headers)
    details.min_height = min(header.height for header in headers)
    details.max_height = max(header.height for header in headers)
    mean_pixels = statistics.fmean(header.width * header.height for header in headers)
    details.megapixels = round(mean_pixels * len(images) / 1e6, 3)


def _format(name: str) -> str:
    suffix = name.rsplit(".", 1)[-1].lower()
    return {"jpg": "jpeg", "tif": "tiff"}.get(suffix, suffix)


# --- Channels and sizes against the training images ---------------------------------------------


def model_channels(version: ModelVersion, *, artifacts: ArtifactStore) -> int | None:
    """Channels the model's encoder takes: the trainer's resolved config (`config.json`, ingested
    beside the version), else the most channels its validation saw; None when neither says."""
    try:
        config = json.loads(
            artifacts.get_bytes(keys.version_prefix(version.project, version.version) + "config.json")
        )
        channels = config.get("in_channels") if isinstance(config, dict) else None
        if isinstance(channels, int) and channels >= 1:
            return channels
    except (SegpipeError, ValueError):
        logger.info(
            "version %s has no readable config.json; using its validation's channels", version.version
        )
    seen = version.details.images.channels
    return max(seen) if seen else None


def _check_channels(
    version: ModelVersion, *, findings: HeaderFindings, artifacts: ArtifactStore, issues: Issues
) -> None:
    if not findings.headers:
        return
    expected = model_channels(version, artifacts=artifacts)
    if expected is None:
        return
    accepted = {expected, 1, *version.details.images.channels}
    differing = {
        name: header.channels for name, header in findings.headers.items() if header.channels not in accepted
    }
    if differing:
        counts = sorted(set(differing.values()))
        issues.error(
            ErrorCode.CHANNELS_DIFFER,
            f"Version {version.version} was trained on {expected}-channel images; {len(differing)} "
            f"sampled images have {', '.join(map(str, counts))} channels ({listing(sorted(differing))}). "
            f"Convert them to {expected} channels the way the training images were made, or train a "
            "version on such images.",
            expected=expected,
            found=counts,
            examples=examples(sorted(differing)),
        )


def _check_sizes(version: ModelVersion, *, findings: HeaderFindings, issues: Issues) -> None:
    stats = version.details.images
    trained = version.details.included_images
    if not findings.headers or not trained or stats.megapixels <= 0:
        return
    training_side = math.sqrt(stats.megapixels * 1e6 / trained)
    side = statistics.median(math.sqrt(h.width * h.height) for h in findings.headers.values())
    ratio = side / training_side
    if ratio > SIZE_RATIO or ratio < 1 / SIZE_RATIO:
        issues.warn(
            WarningCode.IMAGE_SIZES_FAR_FROM_TRAINING,
            f"The images are about {side:.0f} px on a side (median of the sampled headers), {ratio:.1f}x "
            f"the {training_side:.0f} px of version {version.version}'s training images. Whole images are "
            "analysed tile by tile, so size alone is fine, but a different magnification changes how "
            "large objects look to the model: check that they were taken at the training images' pixel "
            "size.",
            median_side=round(side, 1),
            training_side=round(training_side, 1),
            ratio=round(ratio, 2),
        )
