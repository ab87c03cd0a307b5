"""Build the training image and push it to ECR (operator tooling; needs Docker and AWS credentials).

    python infra/push_image.py --region eu-west-1 --repository segpipe-trainer [--tag 0.1.0]

The base image defaults to AWS's PyTorch training container for the region, resolved with the
sagemaker SDK's `image_uris` (the SDK is operator tooling only, never a Lambda dependency).
Prints the pushed image URI, to pass as the stack's TrainingImageUri parameter.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("push_image")


def _run(*command: str, stdin: str | None = None) -> None:
    logger.info("$ %s", " ".join(command))
    subprocess.run(command, check=True, input=stdin, text=True)  # noqa: S603


def base_image(region: str, framework_version: str, py_version: str) -> str:
    from sagemaker import image_uris  # operator tooling only

    uri: str = image_uris.retrieve(
        framework="pytorch",
        region=region,
        version=framework_version,
        py_version=py_version,
        instance_type="ml.g5.xlarge",
        image_scope="training",
    )
    return uri


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--region", required=True)
    parser.add_argument("--repository", default="segpipe-trainer")
    parser.add_argument("--tag", default="latest")
    parser.add_argument("--framework-version", default="2.5")
    parser.add_argument("--py-version", default="py311")
    parser.add_argument("--base-image", help="override the resolved base image")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import boto3

    account = boto3.client("sts", region_name=args.region).get_caller_identity()["Account"]
    ecr = boto3.client("ecr", region_name=args.region)
    with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
        ecr.create_repository(repositoryName=args.repository, imageScanningConfiguration={"scanOnPush": True})
    registry = f"{account}.dkr.ecr.{args.region}.amazonaws.com"
    image = f"{registry}/{args.repository}:{args.tag}"
    base = args.base_image or base_image(args.region, args.framework_version, args.py_version)

    # Log in to our registry and to the one holding the base image (AWS DLC account).
    for host in {registry, base.split("/")[0]}:
        token = ecr.get_authorization_token(registryIds=[host.split(".")[0]])["authorizationData"][0]
        user, password = base64.b64decode(token["authorizationToken"]).decode().split(":", 1)
        _run("docker", "login", "--username", user, "--password-stdin", host, stdin=password)

    _run(
        "docker", "build", "--platform", "linux/amd64", "--build-arg", f"BASE_IMAGE={base}",
        "-f", str(ROOT / "training_image" / "Dockerfile"), "-t", image, str(ROOT),
    )  # fmt: skip
    _run("docker", "push", image)
    sys.stdout.write(image + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
