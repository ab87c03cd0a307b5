"""Request keys bound to numbers in the registry table: one routine for trainings and analyses.

A claim is two items in the project's partition: a counter (atomic ADD) that hands out numbers,
and one item per request key holding the number it got. A repeated delivery of a key finds its
item and gets the same number; two concurrent first deliveries both take a number from the
counter, the conditional put lets one of them bind it, and the other reads the winner's (the
counter only ever moves forward, so a skipped number is never reused).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from segpipe.dal.dynamodb_items import get_item, item_key, partition_key, put_if_absent
from segpipe.dal.interfaces import Claim

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@dataclass(frozen=True)
class ClaimItems:
    """The item names of one kind of claim."""

    counter_sk: str  # sort key of the counter item
    counter_attribute: str  # its number attribute, ADDed to
    counter_type: str  # its item_type
    request_prefix: str  # sort-key prefix of a request key's item
    request_type: str  # its item_type
    number_attribute: str  # the attribute holding the bound number

    def request_sk(self, request_key: str) -> str:
        return self.request_prefix + hashlib.sha256(request_key.encode()).hexdigest()[:40]


class Claims:
    """Finds and binds request keys to numbers, for one kind of claim."""

    def __init__(self, client: DynamoDBClient, table: str, items: ClaimItems) -> None:
        self._db = client
        self._table = table
        self._items = items

    def find(self, project: str, request_key: str) -> Claim | None:
        item = get_item(self._db, self._table, project=project, sk=self._items.request_sk(request_key))
        if item is None:
            return None
        return Claim(version=item[self._items.number_attribute], fresh=False, fingerprint=item["fingerprint"])

    def claim(self, project: str, request_key: str, fingerprint: str, now: datetime) -> Claim:
        if existing := self.find(project, request_key):
            return existing
        items = self._items
        counter = self._db.update_item(
            TableName=self._table,
            Key=item_key(project, items.counter_sk),
            UpdateExpression=f"ADD {items.counter_attribute} :one SET item_type = :type",
            ExpressionAttributeValues={":one": {"N": "1"}, ":type": {"S": items.counter_type}},
            ReturnValues="UPDATED_NEW",
        )
        number = int(counter["Attributes"][items.counter_attribute]["N"])
        item = {
            "pk": partition_key(project),
            "sk": items.request_sk(request_key),
            "item_type": items.request_type,
            "request_key": request_key,
            "fingerprint": fingerprint,
            items.number_attribute: number,
            "created_at": now.isoformat(),
        }
        if not put_if_absent(self._db, self._table, item):
            # A concurrent delivery of the same request won the race: its number stands.
            winner = self.find(project, request_key)
            if winner is None:  # pragma: no cover - the put was refused, so the item exists
                raise RuntimeError(f"request key {request_key!r} is bound, yet cannot be read")
            return winner
        return Claim(version=number, fresh=True, fingerprint=fingerprint)
