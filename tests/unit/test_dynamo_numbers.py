"""Numbers outside DynamoDB's range never reach boto3's serializer as a 500."""

from __future__ import annotations

from decimal import Decimal

import pytest
from boto3.dynamodb.types import TypeSerializer

from segpipe.dal.dynamodb_items import _to_dynamo
from segpipe.errors import InvalidInput


def test_a_tiny_positive_float_is_stored_as_zero() -> None:
    # Given a learning rate that passes gt=0 but is below DynamoDB's smallest magnitude (1E-130)
    item = _to_dynamo({"training": {"learning_rate": 5e-324, "fraction": 1.99e-235, "ok": 0.2}})

    # Then it serialises (boto3 raised decimal.Underflow on the raw value)
    assert item == {"training": {"learning_rate": Decimal(0), "fraction": Decimal(0), "ok": Decimal("0.2")}}
    TypeSerializer().serialize(item)


def test_a_float_beyond_the_largest_magnitude_is_refused_as_input() -> None:
    with pytest.raises(InvalidInput):
        _to_dynamo({"epochs_scale": 1e200})


def test_the_serializer_itself_refuses_the_raw_values() -> None:
    # The oracle: what boto3 does without the guard
    with pytest.raises(Exception, match=r"Underflow|Rounded|Inexact"):
        TypeSerializer().serialize({"x": Decimal("5E-324")})
