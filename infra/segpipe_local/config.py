"""Settings of the embedded local stack."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

from segpipe.settings import DEFAULT_ALLOWED_INSTANCE_TYPES
from segpipe_local.local_origin import is_loopback

DEFAULT_HOME = Path(os.environ.get("SEGPIPE_HOME", Path.home() / ".segpipe"))


class LocalConfig(BaseModel):
    data_dir: Path = Field(default=DEFAULT_HOME, description="State that survives restarts")
    host: str = "127.0.0.1"
    api_port: int = Field(default=8000, description="The HTTP gateway (the API as clients see it)")
    aws_port: int = Field(default=8001, description="The moto server (S3, DynamoDB, EventBridge, SQS)")
    sagemaker_port: int = Field(default=8002, description="The local training-job runner's SageMaker API")
    region: str = "us-east-1"
    stack: str = "segpipe-local"
    bucket: str = "segpipe-local-data"
    table: str = "segpipe-local-registry"
    default_preset: str = "tiny"
    default_epochs: int = 20
    default_tile_size: int = 128
    snapshot_seconds: float = 5.0

    @property
    def backend_host(self) -> str:
        """moto and the SageMaker API listen on loopback only, whatever address the gateway serves."""
        return self.host if is_loopback(self.host) else "127.0.0.1"

    @property
    def aws_endpoint(self) -> str:
        return f"http://{self.backend_host}:{self.aws_port}"

    @property
    def sagemaker_endpoint(self) -> str:
        return f"http://{self.backend_host}:{self.sagemaker_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    def client_environment(self) -> dict[str, str]:
        """What any AWS SDK needs to talk to the local stack."""
        return {
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            "AWS_ENDPOINT_URL_SAGEMAKER": self.sagemaker_endpoint,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "segpipe-local",
            "AWS_SECRET_ACCESS_KEY": "segpipe-local",
        }

    def function_environment(self) -> dict[str, str]:
        """The environment template.yaml gives the functions, with local values."""
        return {
            **self.client_environment(),
            "TABLE_NAME": self.table,
            "DATA_BUCKET": self.bucket,
            "STACK_NAME": self.stack,
            "TRAINING_IMAGE_URI": "local/segpipe-trainer:latest",
            "SAGEMAKER_ROLE_ARN": "arn:aws:iam::000000000000:role/segpipe-local-sagemaker",
            "DEFAULT_PRESET": self.default_preset,
            "DEFAULT_EPOCHS": str(self.default_epochs),
            "DEFAULT_TILE_SIZE": str(self.default_tile_size),
            "ALLOWED_INSTANCE_TYPES": ",".join(DEFAULT_ALLOWED_INSTANCE_TYPES),  # template parameter defaults
            "MAX_INSTANCE_HOURS": "48",
            "MAX_RUNNING_TRAININGS": "4",
            "POWERTOOLS_SERVICE_NAME": "segpipe",
            "POWERTOOLS_METRICS_NAMESPACE": "segpipe",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": os.environ.get("SEGPIPE_LOG_LEVEL", "WARNING"),
        }
