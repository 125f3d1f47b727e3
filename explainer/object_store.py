"""Bytes in and out of the configured object stores (`settings.STORAGES["graphs"]` and `["artifacts"]`).

Both are Django storages: a folder on this host (`FileSystemStorage`, the embedded default) or S3 through
django-storages (`S3Storage`, which writes every object with the SSE headers set in settings). Whatever the backend,
an unreachable store is `StorageUnavailable` (a `ConnectionError`, so the stage runner retries it like any other
outage) and an absent object is `ObjectMissing`; callers never see botocore's own exceptions, and botocore is only
imported when S3 is configured (the `s3` extra).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages

# S3 answers meaning "not now" rather than "no": retried like a connection error.
TRANSIENT_S3_CODES = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout",
                                "RequestTimeTooSkewed", "Throttling", "ThrottlingException"})
MISSING_S3_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class StorageUnavailable(ConnectionError):
    """The object store cannot be reached or answers with a server error; a later attempt may succeed."""


class ObjectMissing(FileNotFoundError):
    """No object under that key."""


def storage(alias: str) -> Storage:
    """The storage configured as `STORAGES[alias]` ("graphs" or "artifacts"), one instance per process."""
    return storages[alias]


def _botocore_errors() -> tuple[tuple[type[Exception], ...], type[Exception]] | None:
    """botocore's connection failures (refused, timed out, closed: two families) and its error answers."""
    try:
        from botocore.exceptions import ClientError, ConnectionError, HTTPClientError
    except ImportError:  # the s3 extra is not installed, so no storage here can raise them
        return None
    return (ConnectionError, HTTPClientError), ClientError


@contextmanager
def storage_errors(key: str) -> Iterator[None]:
    """Translate a backend's failures on `key` into `StorageUnavailable` or `ObjectMissing`."""
    boto = _botocore_errors()
    try:
        yield
    except FileNotFoundError as exc:
        raise ObjectMissing(f"no object '{key}'") from exc
    except Exception as exc:
        if boto is None:
            raise
        connection_errors, client_error = boto
        if isinstance(exc, connection_errors):
            # botocore's message names the endpoint; the reason stays readable to clients without it.
            raise StorageUnavailable(f"the object store is unreachable ({type(exc).__name__}) for '{key}'") from exc
        if isinstance(exc, client_error):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in MISSING_S3_CODES or status == 404:
                raise ObjectMissing(f"no object '{key}'") from exc
            if code in TRANSIENT_S3_CODES or status >= 500:
                raise StorageUnavailable(f"the object store failed ({code or status}) for '{key}'") from exc
        raise


def object_put(store: Storage, key: str, data: bytes) -> None:
    """Write `data` under exactly `key`, replacing what was there (both backends are configured to overwrite)."""
    with storage_errors(key):
        saved = store.save(key, ContentFile(data))
    if saved != key:
        raise RuntimeError(f"the storage wrote '{saved}' instead of '{key}': it must be configured to overwrite")


def object_get(store: Storage, key: str) -> bytes:
    with storage_errors(key):
        with store.open(key, "rb") as handle:
            return handle.read()


def object_delete(store: Storage, key: str) -> None:
    """Delete one object; an absent one is already deleted."""
    try:
        with storage_errors(key):
            store.delete(key)
    except ObjectMissing:
        pass


def objects_delete_under(store: Storage, prefix: str) -> int:
    """Delete every object directly under the folder `prefix`; how many there were."""
    try:
        with storage_errors(prefix):
            _, names = store.listdir(prefix)
    except ObjectMissing:
        return 0
    for name in names:
        object_delete(store, f"{prefix}/{name}")
    return len(names)
