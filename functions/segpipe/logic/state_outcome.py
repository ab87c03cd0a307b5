"""What trainings' and analyses' state-change events share: SageMaker's job statuses as the record's
(`status_table`), and what applying one event did (`StateOutcome`).

Both kinds move their record only forward (`LifecycleStatus.rank`); an event that would not move it
forward (repeated, late, or its record gone) is answered `stale` and changes nothing.
"""

from __future__ import annotations

from typing import Generic, Self, TypeVar

from pydantic import BaseModel

from segpipe.models.common import LifecycleStatus

StatusT = TypeVar("StatusT", bound=LifecycleStatus)

STALE = "stale or repeated event"


def status_table(running: StatusT) -> dict[str, StatusT]:
    """SageMaker's job status -> the record's: a job that is stopping still runs (`running`, each kind
    names its own), and the three ends keep their names."""
    kind = type(running)
    return {
        "InProgress": running,
        "Stopping": running,
        "Completed": kind("completed"),
        "Failed": kind("failed"),
        "Stopped": kind("stopped"),
    }


class StateOutcome(BaseModel, Generic[StatusT]):
    """The answer of the job-state function; each kind adds the number of the record it moved."""

    job_name: str
    project: str | None = None
    before: StatusT | None = None
    after: StatusT | None = None
    applied: bool = False
    note: str = ""

    def stale(self, current: StatusT | None) -> Self:
        """The answer to an event that would not move the record (`current`: its status, if any)."""
        return self.model_copy(update={"before": current, "after": current, "note": STALE})
