"""The Lambda handlers and the environment their settings need at import (cold start)."""

from __future__ import annotations

HANDLERS = (
    "segpipe.handlers.handle_api_request",
    "segpipe.handlers.handle_training_request",
    "segpipe.handlers.handle_job_state",
)
#: Packages that must never reach a Lambda's imports.
HEAVY = frozenset(
    {
        "torch",
        "numpy",
        "moto",
        "sagemaker",
        "scipy",
        "skimage",
        "timm",
        "PIL",
        "segpipe_trainer",
        "segpipe_local",
    }
)
ENVIRONMENT = {
    "TABLE_NAME": "t",
    "DATA_BUCKET": "b",
    "TRAINING_IMAGE_URI": "i",
    "SAGEMAKER_ROLE_ARN": "arn:aws:iam::1:role/r",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
}
