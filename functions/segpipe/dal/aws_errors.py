"""What an AWS failure that no adapter named means: a transient one (throttling, a service fault,
a lost connection) that outlasted the SDK's own retries becomes `ServiceUnavailable`, which the
API answers with 503 and the same request may be repeated; anything else stays a bug to raise.

botocore is imported when a failure is classified, not with this module: by then the client that
failed has loaded it, and a handler's cold import does not pay for it.
"""

from __future__ import annotations

from segpipe.errors import ServiceUnavailable

#: Error codes AWS services answer when a caller should slow down or try again (their HTTP status
#: is 400 for some, so the status alone does not tell).
THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
        "TransactionInProgressException",
        "LimitExceededException",
    }
)
#: Error codes of a fault on the service's side.
SERVICE_FAULTS = frozenset(
    {"InternalError", "InternalFailure", "InternalServerError", "ServiceUnavailable", "RequestTimeout"}
)


def transient_failure(error: BaseException) -> ServiceUnavailable | None:
    """`error` as `ServiceUnavailable` when it is a transient AWS failure; None otherwise."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in THROTTLING or code in SERVICE_FAULTS or status >= 500:
            return ServiceUnavailable(
                f"{error.operation_name} failed after retries ({code or status}); retry the same request.",
                aws_code=code,
                operation=error.operation_name,
            )
        return None
    lost = EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError | ConnectionClosedError
    if isinstance(error, lost):
        return ServiceUnavailable(
            f"An AWS endpoint did not answer ({type(error).__name__}); retry the same request."
        )
    return None
