"""The `STORAGES` entries of the object stores, built from settings (here so that tests build the same ones).

`graphs` holds the gzipped HIF documents, `artifacts` the stage artifacts when `ARTIFACT_BACKEND=s3`. On S3 every
object is written with server-side encryption: `aws:kms` under `S3_KMS_KEY_ID` when one is set, else `AES256`
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/specifying-kms-encryption.html). Credentials come from
boto3's usual chain (environment, shared config, instance or task role), never from these settings.
"""
from __future__ import annotations

from pathlib import Path

BACKENDS = ("local", "s3")


def encryption_parameters(kms_key_id: str) -> dict[str, str]:
    """The SSE headers of every PUT."""
    if kms_key_id:
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id}
    return {"ServerSideEncryption": "AES256"}


def s3_storage(*, bucket: str, region: str, endpoint_url: str, kms_key_id: str) -> dict:
    """django-storages' S3Storage writing under exact keys (overwrite, no ACL, SigV4 as SSE-KMS requires).

    Timeouts are short and botocore retries twice only: the stage runner retries an outage itself, with backoff,
    for `TASK_RETRY_WINDOW_S` (https://django-storages.readthedocs.io/en/latest/backends/amazon-S3.html).
    An `S3_ENDPOINT_URL` (MinIO, Ceph, a test server) is addressed path-style, which such servers expect.
    """
    try:
        from botocore.config import Config
    except ImportError:
        raise SystemExit("hypergraph-sidecar: STORAGE_BACKEND=s3 or ARTIFACT_BACKEND=s3 needs the `s3` extra: "
                         "pip install -e '.[s3]' (django-storages and boto3)") from None

    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "region_name": region or None,
            "endpoint_url": endpoint_url or None,
            "object_parameters": encryption_parameters(kms_key_id),
            "file_overwrite": True,
            "default_acl": None,
            "querystring_auth": False,
            "client_config": Config(signature_version="s3v4", connect_timeout=2, read_timeout=10,
                                    retries={"max_attempts": 2, "mode": "standard"},
                                    s3={"addressing_style": "path" if endpoint_url else "auto"}),
        },
    }


def local_storage(root: Path) -> dict:
    """A folder of this host; `allow_overwrite` so that a re-run replaces the document under the same key."""
    return {"BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(root), "allow_overwrite": True}}
