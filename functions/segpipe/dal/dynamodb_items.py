"""Items of the registry table: keys, and values to and from DynamoDB's attribute format.

Numbers are stored as DynamoDB numbers (Decimal on the wire), read back as int where integral and
float otherwise; a number beyond DynamoDB's range is refused as bad input, one too small to
represent is stored as zero.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

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


def get_item(client: DynamoDBClient, table: str, *, project: str, sk: str) -> dict[str, Any] | None:
    """The project's item under `sk` (a consistent read), unmarshalled, or None."""
    response = client.get_item(
        TableName=table,
        Key={"pk": {"S": partition_key(project)}, "sk": {"S": sk}},
        ConsistentRead=True,
    )
    return unmarshal(response["Item"]) if "Item" in response else None
