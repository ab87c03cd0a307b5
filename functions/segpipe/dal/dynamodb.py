"""The model registry in one DynamoDB table (keys `pk`/`sk`, two sparse indexes).

Items, readable in the console:
- `PROJECT#{p}` / `COUNTER`: the next version number (atomic ADD)
- `PROJECT#{p}` / `REQUEST#{hash}`: a request key (S3 object + ETag, or Idempotency-Key) bound to a version
- `PROJECT#{p}` / `VERSION#{n:06d}`: a model version; `gsi1pk = JOB#{job}` for lookups by job name,
  `gsi2pk = ACTIVE#{p}` only while the version is active
- `PROJECT#{p}` / `METRICS#{n:06d}#{split}`: evaluation of one split (or a pointer to S3)
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from segpipe.dal.claims import ClaimItems, Claims
from segpipe.dal.dynamodb_items import (
    item_key,
    marshal,
    partition_key,
    put_if_absent,
    set_clauses,
    transition_request,
    unmarshal,
    update_if,
)
from segpipe.dal.interfaces import Claim
from segpipe.models.common import SplitName, VersionStatus
from segpipe.models.version import ModelVersion

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

JOB_INDEX = "gsi1"
ACTIVE_INDEX = "gsi2"

_CLAIMS = ClaimItems(
    counter_sk="COUNTER",
    counter_attribute="next_version",
    counter_type="counter",
    request_prefix="REQUEST#",
    request_type="request",
    number_attribute="version",
)


def _version_sk(version: int) -> str:
    return f"VERSION#{version:06d}"


_VERSION_ONLY_KEYS = ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "status_rank", "item_type")


class RegistryTable:
    """The registry table and its client, with the claims (request keys, numbers) of one kind of
    item: versions here, analyses in `segpipe.dal.analyses`."""

    claim_items: ClassVar[ClaimItems]

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._db = client
        self._table = table
        self._claims = Claims(client, table, self.claim_items)

    # --- request keys and numbers (`ClaimRegistry`) ---------------------------------------------

    def find_claim(self, project: str, request_key: str) -> Claim | None:
        return self._claims.find(project, request_key)

    def claim(self, project: str, request_key: str, fingerprint: str, now: datetime) -> Claim:
        return self._claims.claim(project, request_key, fingerprint, now)

    def _create(self, item: dict[str, Any], *, sk: str, item_type: str, status_rank: int) -> bool:
        """Put a new version or analysis (`item`, its fields) under `sk` with its status rank and
        its entry in the job-name index; False when the key is taken."""
        item.update(
            pk=partition_key(item["project"]),
            sk=sk,
            item_type=item_type,
            status_rank=status_rank,
            gsi1pk=f"JOB#{item['job_name']}",
            gsi1sk=sk,
        )
        return put_if_absent(self._db, self._table, item)

    def _stored(self, project: str, sk: str) -> dict[str, Any] | None:
        """The project's item under `sk` as stored (a consistent read), or None."""
        response = self._db.get_item(TableName=self._table, Key=item_key(project, sk), ConsistentRead=True)
        return response.get("Item")

    def _query(self, **query: Any) -> list[dict[str, Any]]:
        """Every item a query (`query`: Query's parameters but the table) finds, over all its pages."""
        pages = self._db.get_paginator("query").paginate(TableName=self._table, **query)
        return [item for page in pages for item in page.get("Items", [])]

    def _partition(self, project: str, prefix: str, **query: Any) -> list[dict[str, Any]]:
        """The project's items whose sort key starts with `prefix`: a query of its one partition,
        never a scan. `query` adds a filter, a projection or an order (and their values)."""
        values = {":pk": {"S": partition_key(project)}, ":prefix": {"S": prefix}}
        values.update(query.pop("ExpressionAttributeValues", {}))
        return self._query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=values,
            **query,
        )

    def _running(self, project: str, prefix: str, **query: Any) -> list[int]:
        """The numbers (after `prefix` in the sort key) of the project's items that `query`'s filter
        keeps, filtered server-side and read as keys only."""
        items = self._partition(project, prefix, ProjectionExpression="sk", **query)
        return sorted(int(item["sk"]["S"].removeprefix(prefix)) for item in items)

    def _find_by_job(self, job_name: str, prefix: str) -> tuple[str, int] | None:
        """(project, number) of the item whose sort key starts with `prefix` (the number follows it)
        and whose job is `job_name`, through the job-name index."""
        response = self._db.query(
            TableName=self._table,
            IndexName=JOB_INDEX,
            KeyConditionExpression="gsi1pk = :job AND begins_with(gsi1sk, :prefix)",
            ExpressionAttributeValues={":job": {"S": f"JOB#{job_name}"}, ":prefix": {"S": prefix}},
            Limit=1,
        )
        items = response.get("Items", [])
        if not items:
            return None
        # The index projects keys only: the table keys carry project and number.
        project = items[0]["pk"]["S"].removeprefix("PROJECT#")
        return project, int(items[0]["sk"]["S"].removeprefix(prefix))


class DynamoModelRegistry(RegistryTable):
    claim_items = _CLAIMS

    # --- versions -------------------------------------------------------------------------------

    def create_version(self, version: ModelVersion) -> bool:
        sk = _version_sk(version.version)
        return self._create(
            version.model_dump(mode="json"), sk=sk, item_type="version", status_rank=version.status.rank
        )

    def get_version(self, project: str, version: int) -> ModelVersion | None:
        item = self._stored(project, _version_sk(version))
        return self._to_version(item) if item is not None else None

    def list_versions(self, project: str, *, active_only: bool = False) -> list[ModelVersion]:
        if active_only:
            items = self._query(
                IndexName=ACTIVE_INDEX,
                KeyConditionExpression="gsi2pk = :pk",
                ExpressionAttributeValues={":pk": {"S": f"ACTIVE#{project}"}},
            )
        else:
            items = self._partition(project, "VERSION#")
        return sorted((self._to_version(item) for item in items), key=lambda v: v.version)

    def running_versions(self, project: str) -> list[int]:
        # The filter still reads every version item of the project (a few hundred bytes each),
        # which is far cheaper than an index.
        return self._running(
            project,
            "VERSION#",
            FilterExpression="#status IN (:queued, :training)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":queued": {"S": VersionStatus.QUEUED.value},
                ":training": {"S": VersionStatus.TRAINING.value},
            },
        )

    def find_by_job(self, job_name: str) -> tuple[str, int] | None:
        return self._find_by_job(job_name, "VERSION#")

    def transition(
        self,
        project: str,
        version: int,
        to: VersionStatus,
        at: datetime,
        *,
        reason: str | None = None,
        fields: dict[str, Any] | None = None,
    ) -> bool:
        key = item_key(project, _version_sk(version))
        request = transition_request(self._table, key, to=to, at=at, reason=reason, updates=fields or {})
        return update_if(self._db, request)

    def update_fields(
        self,
        project: str,
        version: int,
        fields: dict[str, Any],
        *,
        require_status: VersionStatus | None = None,
    ) -> bool:
        present = {key: value for key, value in fields.items() if value is not None}
        absent = [key for key, value in fields.items() if value is None]
        names, values, sets = set_clauses(present)
        removes = []
        for index, key in enumerate(absent):
            names[f"#r{index}"] = key
            removes.append(f"#r{index}")
        expression = ("SET " + ", ".join(sets) if sets else "") + (
            " REMOVE " + ", ".join(removes) if removes else ""
        )
        condition = "attribute_exists(pk)"
        if require_status is not None:
            condition += " AND #status_c = :status_c"
            names["#status_c"] = "status"
            values[":status_c"] = {"S": require_status.value}
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": item_key(project, _version_sk(version)),
            "UpdateExpression": expression.strip(),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
        }
        if values:
            request["ExpressionAttributeValues"] = values
        return update_if(self._db, request)

    def set_active(self, project: str, version: int, active: bool) -> bool:
        if active:
            fields: dict[str, Any] = {
                "active": True,
                "gsi2pk": f"ACTIVE#{project}",
                "gsi2sk": _version_sk(version),
            }
            return self.update_fields(project, version, fields, require_status=VersionStatus.COMPLETED)
        return self.update_fields(project, version, {"active": False, "gsi2pk": None, "gsi2sk": None})

    # --- metrics --------------------------------------------------------------------------------

    def put_metrics(self, project: str, version: int, split: SplitName, metrics: dict[str, Any]) -> None:
        item = {
            "pk": partition_key(project),
            "sk": f"METRICS#{version:06d}#{split}",
            "item_type": "metrics",
            "project": project,
            "version": version,
            "split": split,
            "metrics": metrics,
        }
        self._db.put_item(TableName=self._table, Item=marshal(item))

    def get_metrics(self, project: str, version: int) -> dict[str, dict[str, Any]]:
        response = self._db.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={
                ":pk": {"S": partition_key(project)},
                ":prefix": {"S": f"METRICS#{version:06d}#"},
            },
        )
        items = [unmarshal(item) for item in response.get("Items", [])]
        return {item["split"]: item["metrics"] for item in items}

    # --- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _to_version(item: dict[str, Any]) -> ModelVersion:
        data = unmarshal(item)
        for key in _VERSION_ONLY_KEYS:
            data.pop(key, None)
        return ModelVersion.model_validate(data)
