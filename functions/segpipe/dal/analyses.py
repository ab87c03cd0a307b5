"""Analyses in the registry table, beside the versions (DESIGN.md, "Analysis").

Items, readable in the console:
- `PROJECT#{p}` / `ANALYSIS_COUNTER`: the next analysis number (atomic ADD, its own counter)
- `PROJECT#{p}` / `ANALYSIS_REQUEST#{hash}`: a request key (S3 object + ETag, or Idempotency-Key)
  bound to an analysis number; a namespace apart from the trainings' claims, so one
  Idempotency-Key may serve a training and an analysis
- `PROJECT#{p}` / `ANALYSIS#{n:06d}`: an analysis; `gsi1pk = JOB#{job}` (the trainings' job-name
  index) for lookups by processing-job name
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from segpipe.dal.claims import ClaimItems
from segpipe.dal.dynamodb import RegistryTable
from segpipe.dal.dynamodb_items import (
    attribute_value,
    item_key,
    transition_request,
    unmarshal,
    update_if,
)
from segpipe.models.analysis import Analysis, AnalysisStatus, AnalysisSummary

ANALYSIS_PREFIX = "ANALYSIS#"
_CLAIMS = ClaimItems(
    counter_sk="ANALYSIS_COUNTER",
    counter_attribute="next_analysis",
    counter_type="analysis_counter",
    request_prefix="ANALYSIS_REQUEST#",
    request_type="analysis_request",
    number_attribute="analysis",
)
_ANALYSIS_ONLY_KEYS = ("pk", "sk", "gsi1pk", "gsi1sk", "status_rank", "item_type")


def _analysis_sk(analysis: int) -> str:
    return f"{ANALYSIS_PREFIX}{analysis:06d}"


class DynamoAnalysisRegistry(RegistryTable):
    """`AnalysisRegistry` on the registry table (the same table and indexes as the versions)."""

    claim_items = _CLAIMS

    # --- analyses -------------------------------------------------------------------------------

    def create_analysis(self, analysis: Analysis) -> bool:
        # Absent rather than NULL attributes, so `if_not_exists(started_at)` can set the start once.
        item = analysis.model_dump(mode="json", exclude_none=True)
        sk = _analysis_sk(analysis.analysis)
        return self._create(item, sk=sk, item_type="analysis", status_rank=analysis.status.rank)

    def get_analysis(self, project: str, analysis: int) -> Analysis | None:
        item = self._stored(project, _analysis_sk(analysis))
        return self._to_analysis(item) if item is not None else None

    def list_analyses(self, project: str) -> list[Analysis]:
        found = [self._to_analysis(item) for item in self._partition(project, ANALYSIS_PREFIX)]
        return sorted(found, key=lambda a: a.analysis, reverse=True)

    def running_analyses(self, project: str) -> list[int]:
        return self._running(
            project,
            ANALYSIS_PREFIX,
            FilterExpression="status_rank < :ended",
            ExpressionAttributeValues={":ended": {"N": str(AnalysisStatus.COMPLETED.rank)}},
        )

    def find_analysis_by_job(self, job_name: str) -> tuple[str, int] | None:
        return self._find_by_job(job_name, ANALYSIS_PREFIX)

    def transition_analysis(
        self,
        project: str,
        analysis: int,
        to: AnalysisStatus,
        at: datetime,
        *,
        reason: str | None = None,
        summary: AnalysisSummary | None = None,
    ) -> bool:
        updates: dict[str, Any] = {}
        if to.terminal:
            updates["ended_at"] = at.isoformat()
        if summary is not None:
            updates["summary"] = summary.model_dump(mode="json")
        key = item_key(project, _analysis_sk(analysis))
        request = transition_request(self._table, key, to=to, at=at, reason=reason, updates=updates)
        if to in (AnalysisStatus.RUNNING, AnalysisStatus.COMPLETED):
            # A job may complete before its running event arrives: completion implies it started.
            # A failure or stop straight from queued (refused, stopped before it ran) did not.
            request["UpdateExpression"] += ", #started = if_not_exists(#started, :at)"
            request["ExpressionAttributeNames"]["#started"] = "started_at"
            request["ExpressionAttributeValues"][":at"] = attribute_value(at.isoformat())
        return update_if(self._db, request)

    def request_analysis_stop(self, project: str, analysis: int) -> bool:
        request = {
            "TableName": self._table,
            "Key": item_key(project, _analysis_sk(analysis)),
            "UpdateExpression": "SET stop_requested = :yes",
            "ConditionExpression": "attribute_exists(pk) AND status_rank < :ended",
            "ExpressionAttributeValues": {
                ":yes": {"BOOL": True},
                ":ended": {"N": str(AnalysisStatus.COMPLETED.rank)},
            },
        }
        return update_if(self._db, request)

    @staticmethod
    def _to_analysis(item: dict[str, Any]) -> Analysis:
        data = unmarshal(item)
        for key in _ANALYSIS_ONLY_KEYS:
            data.pop(key, None)
        return Analysis.model_validate(data)
