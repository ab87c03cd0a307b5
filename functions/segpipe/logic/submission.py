"""The routine trainings and analyses share: check once, bind the request key, write, start one job.

A request is identified by a request key (the uploaded object and its ETag, or the HTTP
Idempotency-Key). The registry binds each key to one number, and the job name derives from that
number and the key, so a repeated delivery finds the same number and never starts a second job.

`submit_once` is the order, the same for both kinds; a `Submission` is what differs between them.
Every step can run again: a retry after a stop half-way finds the claim and asks the kind to
`resume` what was recorded, or (when nothing was recorded, or the kind would rather check again)
runs the checks and the writes once more under the same number. A report with errors writes
nothing and takes no number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, Field

from segpipe.dal.interfaces import Claim
from segpipe.errors import IdempotencyKeyReused, JobRefused

ReportT = TypeVar("ReportT", bound=BaseModel)
Record = TypeVar("Record")  # what an accepted request stored: a ModelVersion, an Analysis
Checked = TypeVar("Checked")  # what passing checks hand on to the writes
Accepted = TypeVar("Accepted", bound=BaseModel, covariant=True)  # the answer for an accepted request
Refusal = TypeVar("Refusal", bound="Rejected[Any]", covariant=True)  # the answer for a request with errors

RequestT = TypeVar("RequestT", contravariant=True)
DepsT = TypeVar("DepsT", contravariant=True)
OutcomeT = TypeVar("OutcomeT", covariant=True)
Body = TypeVar("Body", bound=BaseModel)  # a delivery's request body
Collaborators = TypeVar("Collaborators", bound="Clocked")  # a delivery's `*Deps`

REUSED_KEY = "This Idempotency-Key was already used for a different request body."


class Rejected(BaseModel, Generic[ReportT]):
    """A request whose checks found errors: nothing was written and no number was taken."""

    report: ReportT = Field(description="The report, with the errors")


class Submission(Protocol[Record, Checked, Accepted, Refusal]):
    """One request of one kind (training, analysis), with what its kind needs to submit it."""

    @property
    def fingerprint(self) -> str:
        """A digest of the request body (`fingerprint_of`)."""
        ...

    def now(self) -> datetime: ...

    def find_claim(self) -> Claim | None:
        """The number already bound to this request key, if any (a read)."""
        ...

    def claim(self, now: datetime) -> Claim:
        """Bind the request key to the next number, or return the one already bound."""
        ...

    def reused(self, claim: Claim) -> IdempotencyKeyReused:
        """The refusal of a key bound to another request body."""
        ...

    def stored(self, number: int) -> Record | None:
        """What an earlier attempt recorded under `number`."""
        ...

    def resume(self, record: Record) -> Accepted | None:
        """The answer for a request recorded before, finishing what the earlier attempt left
        undone; None to run the checks and the writes again under the same number."""
        ...

    def check(self, earlier: Claim | None) -> Checked:
        """The checks, once; `earlier` is this key's claim from before the checks (or None)."""
        ...

    def refusal(self, checked: Checked) -> Refusal | None:
        """The answer when the checks found errors; None when the request may go on."""
        ...

    def bind(self, checked: Checked, claim: Claim, now: datetime) -> Accepted:
        """Write what the accepted request needs under `claim`'s number and start its job."""
        ...


class Clocked(Protocol):
    """A kind's collaborators, as far as the routine reads them: the time of a write."""

    @property
    def clock(self) -> Callable[[], datetime]: ...


@dataclass(frozen=True)
class Delivery(Generic[Body, Collaborators]):
    """One delivery of a request of one kind: what its `Submission` starts from (the body, the
    project, the request key, the body's digest and the kind's collaborators)."""

    request: Body
    project: str
    request_key: str
    fingerprint: str
    deps: Collaborators

    def now(self) -> datetime:
        return self.deps.clock()


class UseCase(Protocol[RequestT, DepsT, OutcomeT]):
    """A kind's submit use case (`submit`, `submit_analysis`), as its entry points call it."""

    def __call__(
        self, request: RequestT, *, project: str, request_key: str, fingerprint: str, deps: DepsT
    ) -> OutcomeT: ...


def fingerprint_of(request: BaseModel) -> str:
    """A digest of the request body, to tell a retry from a different request under the same key."""
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()


def submit_once(
    submission: Submission[Record, Checked, Accepted, Refusal],
) -> Accepted | Refusal:
    """Check and start, or find what an earlier delivery of the same request started.

    Order of writes, each repeatable: the claim (taken only once the checks pass), then the kind's
    writes and its job. A key bound to another body is refused (`IdempotencyKeyReused`)."""
    earlier = submission.find_claim()
    if earlier is not None:
        _same_body(submission, earlier)
        record = submission.stored(earlier.version)
        # None: bound but never recorded (an earlier attempt stopped half-way): finish it below.
        if record is not None and (answer := submission.resume(record)) is not None:
            return answer
    checked = submission.check(earlier)
    if (refusal := submission.refusal(checked)) is not None:
        return refusal
    now = submission.now()
    claim = submission.claim(now)
    _same_body(submission, claim)  # another request under this key won the race since the read
    return submission.bind(checked, claim, now)


def start_job(create: Callable[[], Any], record_refusal: Callable[[str], Any]) -> bool:
    """Start a job; False when SageMaker refuses it for good, after `record_refusal(reason)` has
    marked the record failed (it then says why no job runs, rather than staying queued for ever)."""
    try:
        create()  # False from `create`: an earlier attempt started it (the same deterministic name)
    except JobRefused as error:
        record_refusal(error.message)
        return False
    return True


def _same_body(submission: Submission[Any, Any, Any, Any], claim: Claim) -> None:
    if claim.fingerprint != submission.fingerprint:
        raise submission.reused(claim)
