"""`validate_request`: the checks in the report's order, over the fast reading of the dataset or,
when that cannot vouch for the file, the careful one."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from segpipe.dal.interfaces import DatasetStore
from segpipe.logic.jobspec import ResolvedTraining
from segpipe.logic.memory import gc_paused
from segpipe.logic.split import SplitPlan, assign_split
from segpipe.logic.validate.assignment import check_assignment
from segpipe.logic.validate.classes import check_classes, check_tiny_objects, class_counts
from segpipe.logic.validate.compute import ComputeRules, estimate_findings, training_compute_findings
from segpipe.logic.validate.context import Context, Source, Training
from segpipe.logic.validate.dataset import (
    Scanned,
    check_annotations,
    check_duplicates,
    no_classes,
    resolve_classes,
    split_by_status,
)
from segpipe.logic.validate.details import Checked, split_plan, training_details
from segpipe.logic.validate.images import check_image_files, output_name_findings
from segpipe.logic.validate.issues import Issues
from segpipe.logic.validate.loading import (
    MAX_ANNOTATIONS_BYTES,
    AnnotationsFile,
    Dataset,
    Refused,
    careful_dataset,
    fast_dataset,
    read_annotations,
)
from segpipe.logic.validate.scan import Scope
from segpipe.logic.validate.training import BaseLookup, TrainingDefaults, resolve_training
from segpipe.logic.validate.workers import scan_all
from segpipe.models.report import ErrorCode, TrainingDetails, ValidationReport
from segpipe.models.request import TrainingRequest
from segpipe.models.version import ModelVersion


@dataclass(frozen=True)
class Validation:
    report: ValidationReport  # ok, errors, warnings, details (TrainingDetails filled in)
    plan: SplitPlan | None  # None exactly when the report has errors
    training: ResolvedTraining  # the preset, epochs and tile size a job of this request runs with
    base: ModelVersion | None  # the version named in `base`, read once (None: a preset or no base)


@dataclass(frozen=True)
class _Checked:
    report: ValidationReport
    plan: SplitPlan | None


def validate_request(  # long: 8 parameters, the use cases' collaborators; each optional one a limit
    request: TrainingRequest,
    *,
    project: str,
    store: DatasetStore,
    defaults: TrainingDefaults,
    base_lookup: BaseLookup | None = None,
    compute_rules: ComputeRules | None = None,
    running_trainings: Callable[[], Sequence[int]] | None = None,
    max_annotations_bytes: int = MAX_ANNOTATIONS_BYTES,
) -> Validation:
    """Check `request` against its dataset in `store` and plan the split.

    `base_lookup` finds a previous version of the project; None (offline) skips checking a
    version named in `base`. `compute_rules` limits what the request may spend (None: no
    limits, for offline use); `running_trainings` lists the project's versions that are queued
    or training (None skips that limit).
    """
    number = request.base_version()
    base = base_lookup(number) if base_lookup is not None and number is not None and number >= 1 else None
    read_base = None if base_lookup is None else lambda _: base  # the checks see the version read here
    gc.unfreeze()  # what the previous validation froze goes back to the collector's oldest generation
    with gc_paused(), _frozen_on_exit():
        training, issues = resolve_training(request, defaults=defaults, base_lookup=read_base)
        if compute_rules is not None:
            issues.extend(
                training_compute_findings(request.compute, rules=compute_rules, running=running_trainings)
            )
        file = read_annotations(request, project=project, store=store, max_bytes=max_annotations_bytes)
        if isinstance(file, Issues):
            checked = _unloaded(request, training=training, issues=issues, found=file)
        else:
            source = Source(store, project, file.dataset)
            context = Context(request=request, training=training, source=source)
            checked = _read_and_check(file, context=context, issues=issues)
    resolved = ResolvedTraining(preset=training.preset, epochs=training.epochs, tile_size=training.tile_size)
    return Validation(report=checked.report, plan=checked.plan, training=resolved, base=base)


def _read_and_check(file: AnnotationsFile, *, context: Context, issues: Issues) -> _Checked:
    """The fast reading's checks, or, when it cannot vouch for the file, the careful one's."""
    with suppress(Refused):  # outside the handler, the fast reading's partial scan is freed first
        return _validate_dataset(fast_dataset(file.raw), context=context, issues=issues)
    return _validate_carefully(file, context=context, issues=issues)


@contextmanager
def _frozen_on_exit() -> Iterator[None]:
    """Freeze the objects tracked by the collector (`gc.freeze`) when the block ends.

    A validation leaves millions of acyclic objects behind (the plan's records and their boxes).
    The collector, enabled again, would walk all of them at its next pass (about 2 s at a million
    annotations) only to find nothing to free; frozen, they are skipped, and still freed by
    reference counting when the caller drops them. The next validation unfreezes them first, so
    any reference cycle among them is collected later as usual.
    """
    try:
        yield
    finally:
        gc.freeze()


def _validate_carefully(file: AnnotationsFile, *, context: Context, issues: Issues) -> _Checked:
    dataset = careful_dataset(file)
    if isinstance(dataset, Issues):
        return _unloaded(context.request, training=context.training, issues=issues, found=dataset)
    return _validate_dataset(dataset, context=context, issues=issues)


def _unloaded(request: TrainingRequest, *, training: Training, issues: Issues, found: Issues) -> _Checked:
    """The report when the dataset could not be read (`found` says why)."""
    issues.extend(found)
    if not request.classes:
        issues.extend(no_classes(available=None))
    details = TrainingDetails(dataset=request.dataset, model_type=request.model_type, **training.details())
    return _Checked(report=issues.report(details), plan=None)


def _validate_dataset(dataset: Dataset, *, context: Context, issues: Issues) -> _Checked:
    """Every dataset rule, in the report's order; `issues` holds what was found before."""
    request, rules = context.request, context.rules
    classes, class_issues = resolve_classes(request.classes, dataset.categories)
    images, status_issues = split_by_status(dataset.images)
    scope = Scope(
        completed=images.completed,
        unfinished_ids={image.id for image in images.unfinished},
        included_ids=classes.included_ids,
        excluded_ids=classes.excluded_ids,
        patch=context.training.patch,
        edge_tolerance=rules.edge_tolerance_px,
    )
    scanned = Scanned(dataset, classes, images, scan_all(dataset.annotations, scope=scope))
    found = check_duplicates(dataset, annotation_ids=scanned.scan.ids, classes=request.classes)
    for more in (class_issues, status_issues, check_annotations(scanned, rules=rules)):
        found.extend(more)
    files = check_image_files(images.completed, context=context)
    found.extend(files.issues)
    found.extend(
        output_name_findings(
            [image.file_name for image in images.completed], what="completed images", outputs="predictions"
        )
    )
    assignment = assign_split(images.completed, test_set=request.test_set)
    found.extend(
        check_assignment(assignment, test_set=request.test_set, all_images=dataset.images, images=images)
    )
    counts = class_counts(classes, scan=scanned.scan, assignment=assignment, rules=rules)
    found.extend(check_classes(counts, assignment=assignment, rules=rules))
    found.extend(check_tiny_objects(classes, scan=scanned.scan, patch=context.training.patch, rules=rules))
    return _conclude(
        Checked(scanned, files.stats, assignment, counts), context=context, issues=issues, found=found
    )


def _conclude(checked: Checked, *, context: Context, issues: Issues, found: Issues) -> _Checked:
    """The details, the estimate's warnings, the report and (without errors) the plan."""
    issues.extend(found)
    details = training_details(checked, context=context)
    refused = issues.has_error(ErrorCode.INSTANCE_TYPE_NOT_ALLOWED)
    issues.extend(
        estimate_findings(
            context.request.compute,
            details.estimate,
            refused=refused,
            noun="training",
            fix="Raise max_hours, lower epochs, or choose a faster instance.",
        )
    )
    report = issues.report(details)
    if not report.ok:
        return _Checked(report=report, plan=None)
    return _Checked(report=report, plan=split_plan(checked, context=context))
