"""An S3 server of the tests' own: moto's server mode on 127.0.0.1 and a free port, reached over HTTP by boto3 as
any S3 would be (nothing is patched), by this process and by the worker and web processes a test starts.

It runs in a thread of the test process, so `stop()` is a real outage (the port refuses connections) and `start()`
brings the same server back with what it stored (moto keeps its state in the process), as an S3 region that comes
back does.
"""
from __future__ import annotations

import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from tests.local_servers import free_port

ACCESS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
          "AWS_DEFAULT_REGION": "us-east-1"}
REGION = "us-east-1"


@dataclass
class S3Server:
    port: int
    _server: object | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        if self._server is not None:
            return
        self._server = make_server("127.0.0.1", self.port, DomainDispatcherApplication(create_backend_app),
                                   threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-s3", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """An outage: stop serving and close the port, so clients get 'connection refused'."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
        self._server = self._thread = None

    def client(self, service: str = "s3"):
        import boto3

        return boto3.client(service, endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def new_bucket(self) -> "Bucket":
        """A bucket of its own and a KMS key of its own (moto's KMS, on the same server)."""
        name = f"hg-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        kms_key = self.client("kms").create_key(Description="hypergraph tests")["KeyMetadata"]["Arn"]
        return Bucket(self, name, kms_key)



@dataclass(frozen=True)
class Bucket:
    """One test's bucket and KMS key on the server."""

    server: S3Server
    name: str
    kms_key: str

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.server.client().get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", ()))

    def head(self, key: str) -> dict:
        return self.server.client().head_object(Bucket=self.name, Key=key)

    def get(self, key: str) -> bytes:
        return self.server.client().get_object(Bucket=self.name, Key=key)["Body"].read()

    def put(self, key: str, data: bytes) -> None:
        self.server.client().put_object(Bucket=self.name, Key=key, Body=data)


@contextmanager
def s3_server() -> Iterator[S3Server]:
    server = S3Server(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def s3_env(bucket: Bucket, prefix: str = "hypergraph") -> dict[str, str]:
    """What a process of the service needs to keep graphs and artifacts in `bucket`, SSE-KMS under its key."""
    return {**ACCESS, "STORAGE_BACKEND": "s3", "ARTIFACT_BACKEND": "s3", "S3_BUCKET": bucket.name,
            "S3_PREFIX": prefix, "S3_ENDPOINT_URL": bucket.server.url, "S3_REGION": REGION,
            "S3_KMS_KEY_ID": bucket.kms_key}
