"""What a request may spend (the deployment's compute guard) and what its estimate warns about.

Shared with the analysis checks: `check_compute` and `check_estimate` add to the caller's issues;
`compute_findings` and `estimate_findings` return theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from segpipe.logic import estimate
from segpipe.logic.validate.issues import Issues, listing
from segpipe.logic.validate.thresholds import EXAMPLES
from segpipe.models.report import ErrorCode, Estimate, WarningCode


@dataclass(frozen=True)
class ComputeRules:
    """What a deployment lets one request spend (template parameters, through settings)."""

    allowed_instance_types: frozenset[str]
    max_instance_hours: float  # instance_count x max_hours of one request
    max_running_trainings: int  # versions queued or training at once in one project


class ComputeAsk(Protocol):
    """What a request asks to spend: `compute` of a training or of an analysis request."""

    @property
    def instance_type(self) -> str: ...
    @property
    def instance_count(self) -> int: ...
    @property
    def max_hours(self) -> float: ...


def training_compute_findings(
    compute: ComputeAsk, *, rules: ComputeRules, running: Callable[[], Sequence[int]] | None
) -> Issues:
    """The compute guard of a training request, with the per-project limit on running trainings
    (`running` lists the project's queued or training versions; None skips that limit)."""
    found = compute_findings(compute, rules=rules, noun="training")
    if running is None:
        return found
    versions = sorted(running())
    if len(versions) >= rules.max_running_trainings:
        found.error(
            ErrorCode.TOO_MANY_RUNNING_JOBS,
            f"The project already has {len(versions)} trainings queued or running "
            f"(versions {', '.join(map(str, versions[:EXAMPLES]))}); "
            f"this deployment runs at most {rules.max_running_trainings} at once per project. "
            "Wait for one to end, or stop one.",
            running=versions[:100],
            max_running=rules.max_running_trainings,
        )
    return found


def compute_findings(compute: ComputeAsk, *, rules: ComputeRules, noun: str) -> Issues:
    """The deployment's limits on one request's instance type and instance-hours (`noun`: what
    the request runs, for the messages)."""
    found = Issues()
    if compute.instance_type not in rules.allowed_instance_types:
        allowed = sorted(rules.allowed_instance_types)
        found.error(
            ErrorCode.INSTANCE_TYPE_NOT_ALLOWED,
            f"{compute.instance_type} is not an instance type this deployment allows ({listing(allowed)}). "
            "Choose one of them, or ask the operator to add it to the AllowedInstanceTypes parameter.",
            instance_type=compute.instance_type,
            allowed=allowed,
        )
    instance_hours = compute.instance_count * compute.max_hours
    if instance_hours > rules.max_instance_hours:
        found.error(
            ErrorCode.COMPUTE_OVER_LIMIT,
            f"The request asks for up to {compute.instance_count} x {compute.max_hours:g} h "
            f"= {instance_hours:g} instance-hours; "
            f"this deployment allows at most {rules.max_instance_hours:g} per {noun}. "
            "Lower compute.instance_count or compute.max_hours.",
            instance_count=compute.instance_count,
            max_hours=compute.max_hours,
            instance_hours=instance_hours,
            max_instance_hours=rules.max_instance_hours,
        )
    return found


def check_compute(compute: ComputeAsk, *, rules: ComputeRules, issues: Issues, noun: str) -> None:
    """`compute_findings`, added to `issues`."""
    issues.extend(compute_findings(compute, rules=rules, noun=noun))


def estimate_findings(
    compute: ComputeAsk, estimated: Estimate | None, *, refused: bool, noun: str, fix: str
) -> Issues:
    """`unknown_instance_type` for an allowed type the price table lacks (`refused`: the type is
    not allowed, which is reported already), and `estimate_exceeds_max_hours` when the estimate
    would outlast `compute.max_hours` (`fix` ends that message)."""
    found = Issues()
    if not refused and not estimate.is_known_instance(compute.instance_type):  # allowed, but not priced
        found.warn(
            WarningCode.UNKNOWN_INSTANCE_TYPE,
            f"{compute.instance_type} is not in segpipe's price table, "
            "so the cost is unknown and the time a guess. "
            "Check the name; GPU instances such as ml.g5.xlarge are known.",
            instance_type=compute.instance_type,
        )
    if estimated is not None and estimated.hours > compute.max_hours:
        found.warn(
            WarningCode.ESTIMATE_EXCEEDS_MAX_HOURS,
            f"The {noun} is estimated to take {estimated.hours:.1f} h, "
            f"more than compute.max_hours ({compute.max_hours:g} h); "
            f"it would be stopped before it ends. {fix}",
            estimated_hours=estimated.hours,
            max_hours=compute.max_hours,
        )
    return found


def check_estimate(
    compute: ComputeAsk, estimated: Estimate | None, *, issues: Issues, noun: str, fix: str
) -> None:
    """`estimate_findings`, added to `issues` (whose errors tell whether the type was refused)."""
    refused = issues.has_error(ErrorCode.INSTANCE_TYPE_NOT_ALLOWED)
    issues.extend(estimate_findings(compute, estimated, refused=refused, noun=noun, fix=fix))
