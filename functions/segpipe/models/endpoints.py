"""Where the data bucket's presigned URLs point: one rule for the presigns (`dal/s3.py`) and for
the review page's Content-Security-Policy (`handlers/ui_assets.py`). Pure: no boto3."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

#: An http(s) origin: scheme, host name, IPv4 or bracketed IPv6 address, optional port; nothing else.
ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def preview_origin(bucket: str, region: str, endpoint_url: str | None) -> str:
    """The origin (`scheme://host[:port]`) of the URLs `S3ArtifactStore.presign_get` hands out, as
    the handlers' S3 client makes them (`runtime.client_config`): on AWS, the bucket's regional
    virtual-hosted endpoint; with a custom endpoint (the local stack), that endpoint's origin.
    Raises ValueError for an endpoint that has no http(s) origin."""
    if not endpoint_url:
        suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
        return f"https://{bucket}.s3.{region}.{suffix}"
    parts = urlsplit(endpoint_url)
    origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}".lower()
    if not ORIGIN.fullmatch(origin):
        raise ValueError(f"The S3 endpoint {endpoint_url!r} has no http(s) origin.")
    return origin
