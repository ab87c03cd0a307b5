"""Submitting an analysis through the routine it shares with trainings: the typed outcome, the race for
a key, and the recovery paths that test_analysis_submit.py leaves out."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

from segpipe.dal.interfaces import Claim
from segpipe.errors import IdempotencyKeyReused
from segpipe.logic.analysis_submit import AnalysisAccepted, RejectedAnalysis
from segpipe.models.analysis import AnalysisStatus
from tests.unit.fakes import MemoryAnalyses
from tests.unit.test_analysis_submit import Setup


class RivalAnalyses(MemoryAnalyses):
    """Another request body claims the key between the read and this request's claim."""

    def claim(self, project: str, request_key: str, fingerprint: str, now: datetime) -> Claim:
        super().claim(project, request_key, "fingerprint of another body", now)
        return super().claim(project, request_key, fingerprint, now)


def accepted(setup: Setup, **body: Any) -> AnalysisAccepted:
    outcome = setup.submit(**body)
    assert isinstance(outcome, AnalysisAccepted), outcome
    return outcome


def test_an_accepted_analysis_is_answered_with_its_project() -> None:
    outcome = accepted(Setup())

    assert (outcome.project, outcome.analysis, outcome.repeated) == ("lab", 1, False)
    assert outcome.report.analysis == 1 and outcome.report.job_name == outcome.job_name


def test_a_rejected_analysis_is_typed_and_carries_its_report() -> None:
    outcome = Setup().submit(images="plate-404")

    assert isinstance(outcome, RejectedAnalysis)
    assert [issue.code for issue in outcome.report.errors] == ["no_images"]


def test_a_key_another_body_claims_between_the_read_and_the_claim_is_refused() -> None:
    setup = Setup()
    rival = RivalAnalyses()
    setup.deps = replace(setup.deps, analyses=rival)

    with pytest.raises(IdempotencyKeyReused) as refused:
        setup.submit()

    assert refused.value.context == {"analysis": 1}
    assert rival.analyses == {} and setup.jobs.created == [] and setup.written() == []


def test_a_refusal_when_the_frozen_item_is_started_on_retry_marks_it_failed() -> None:
    setup = Setup()
    first = accepted(setup)
    setup.jobs.created.clear()  # the attempt stopped after the item was written, before its job
    setup.jobs.refuse = "SageMaker refused the processing job: ResourceLimitExceeded"

    again = accepted(setup)

    assert (again.analysis, again.status, again.repeated) == (first.analysis, AnalysisStatus.FAILED, True)
    item = setup.analyses.get_analysis("lab", 1)
    assert item is not None and item.status is AnalysisStatus.FAILED
    assert item.failure_reason == setup.jobs.refuse


def test_a_repeat_of_a_refused_analysis_answers_failed_without_asking_again() -> None:
    setup = Setup()
    setup.jobs.refuse = "SageMaker refused the processing job: ResourceLimitExceeded"
    accepted(setup)
    setup.jobs.refuse = None

    again = accepted(setup)

    assert (again.status, again.repeated) == (AnalysisStatus.FAILED, True) and setup.jobs.created == []


def test_a_frozen_item_whose_version_was_removed_stays_queued_without_a_job() -> None:
    setup = Setup()
    accepted(setup)
    setup.jobs.created.clear()
    del setup.world.registry.versions[("lab", 1)]

    again = accepted(setup)

    assert (again.status, again.repeated) == (AnalysisStatus.QUEUED, True) and setup.jobs.created == []
