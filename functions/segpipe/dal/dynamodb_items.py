"""Items of the registry table: keys, and values to and from DynamoDB's attribute format.

Numbers are stored as DynamoDB numbers (Decimal on the wire), read back as int where integral and
float otherwise; a number beyond DynamoDB's range is refused as bad input, one too small to
represent is stored as zero.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from pydantic_core import to_jsonable_python

from segpipe.errors import InvalidInput

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def partition_key(project: str) -> str:
    return f"PROJECT#{project}"


def item_key(project: str, sk: str) -> dict[str, Any]:
    """The table key of the project's item under `sk`, as the low-level client takes it."""
    return {"pk": {"S": partition_key(project)}, "sk": {"S": sk}}


#: DynamoDB numbers: magnitudes from 1E-130 to below 1E+126 (and 0); boto3 refuses anything else.
_SMALLEST = Decimal("1E-130")
_TOO_LARGE = Decimal("1E+126")


def _dynamo_number(text: str) -> Decimal:
    number = Decimal(text)
    if number and abs(number) < _SMALLEST:
        return Decimal(0)  # below DynamoDB's range: as good as zero for every figure segpipe stores
    if abs(number) >= _TOO_LARGE:
        raise InvalidInput(f"The number {text} is larger than the registry can store.", number=text)
    return number


def _to_dynamo(value: Any) -> Any:
    """JSON-compatible data with floats as Decimal, as DynamoDB wants them."""
    return json.loads(json.dumps(value, default=to_jsonable_python), parse_float=_dynamo_number)


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _from_dynamo(item) for key, item in value.items()}
    if isinstance(value, list | set):
        return [_from_dynamo(item) for item in value]
    return value


def marshal(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in _to_dynamo(item).items()}


def unmarshal(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _from_dynamo(_deserializer.deserialize(value)) for key, value in item.items()}


def attribute_value(value: Any) -> Any:
    return _serializer.serialize(_to_dynamo(value))


def condition_failed(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def put_if_absent(client: DynamoDBClient, table: str, item: dict[str, Any]) -> bool:
    """Writes `item` unless an item with its key exists; whether it wrote."""
    try:
        client.put_item(TableName=table, Item=marshal(item), ConditionExpression="attribute_not_exists(pk)")
    except ClientError as error:
        if condition_failed(error):
            return False
        raise
    return True


def update_if(client: DynamoDBClient, request: dict[str, Any]) -> bool:
    """Runs the conditional UpdateItem `request`; whether it wrote (False: its condition failed)."""
    try:
        client.update_item(**request)
    except ClientError as error:
        if condition_failed(error):
            return False
        raise
    return True


def set_clauses(updates: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any], list[str]]:
    """Names, values and `#fN = :vN` clauses of an UpdateItem's SET of `updates`."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    sets: list[str] = []
    for index, (key, value) in enumerate(updates.items()):
        names[f"#f{index}"] = key
        values[f":v{index}"] = attribute_value(value)
        sets.append(f"#f{index} = :v{index}")
    return names, values, sets


class RankedStatus(Protocol):
    """A version's or an analysis's status: its value and its place in the lifecycle."""

    @property
    def value(self) -> str: ...

    @property
    def rank(self) -> int: ...


def transition_request(
    table: str,
    key: dict[str, Any],
    *,
    to: RankedStatus,
    at: datetime,
    reason: str | None,
    updates: dict[str, Any],
) -> dict[str, Any]:
    """The UpdateItem request that moves the item at `key` to status `to` (with `updates`, and
    `failure_reason` when it fails) and appends the change to its `status_history`, only while the
    item exists at a lower rank: events may repeat or arrive out of order, a status never goes back."""
    fields = {"status": to.value, "status_rank": to.rank, "updated_at": at.isoformat(), **updates}
    if reason is not None and to.value == "failed":
        fields["failure_reason"] = reason
    names, values, sets = set_clauses(fields)
    sets.append("#history = list_append(if_not_exists(#history, :empty), :change)")
    names["#history"] = "status_history"
    values[":empty"] = {"L": []}
    values[":change"] = attribute_value([{"status": to.value, "at": at.isoformat(), "reason": reason}])
    values[":rank"] = {"N": str(to.rank)}
    return {
        "TableName": table,
        "Key": key,
        "UpdateExpression": "SET " + ", ".join(sets),
        "ConditionExpression": "attribute_exists(pk) AND status_rank < :rank",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


def get_item(client: DynamoDBClient, table: str, *, project: str, sk: str) -> dict[str, Any] | None:
    """The project's item under `sk` (a consistent read), unmarshalled, or None."""
    response = client.get_item(
        TableName=table,
        Key=item_key(project, sk),
        ConsistentRead=True,
    )
    return unmarshal(response["Item"]) if "Item" in response else None
