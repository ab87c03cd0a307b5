"""Which AWS failures the API answers with 503 (retry) and which it raises as bugs."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError, ReadTimeoutError

from segpipe.dal.aws_errors import transient_failure
from segpipe.errors import ServiceUnavailable


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutItem")


@pytest.mark.parametrize(
    "error",
    [
        client_error("ThrottlingException", 400),
        client_error("SlowDown", 503),
        client_error("SomethingNew", 502),  # any 5xx is the service's side
        EndpointConnectionError(endpoint_url="https://dynamodb.eu-west-1.amazonaws.com"),
        ReadTimeoutError(endpoint_url="https://s3.amazonaws.com"),
    ],
    ids=["throttled", "slow-down", "5xx", "no-endpoint", "read-timeout"],
)
def test_a_transient_failure_becomes_service_unavailable(error: Exception) -> None:
    typed = transient_failure(error)

    assert isinstance(typed, ServiceUnavailable)
    assert "retry the same request" in typed.message


@pytest.mark.parametrize(
    "error",
    [
        client_error("ValidationException", 400),
        client_error("AccessDeniedException", 400),
        ParamValidationError(report="bad parameter"),
        KeyError("a bug"),
    ],
    ids=["validation", "denied", "params", "not-aws"],
)
def test_anything_else_is_left_to_raise(error: Exception) -> None:
    assert transient_failure(error) is None
