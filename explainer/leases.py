"""Lease owner tokens that say which process holds a stage, so a dead holder on this host is seen at once.

A token is `<host tag>:<pid>:<random>`. When a worker's pool process is killed, Celery redelivers its message
straight away; the new delivery finds the lease held, but by a process of this host that no longer exists, and may
take it over instead of waiting for the lease to expire. Holders on other hosts cannot be checked from here: their
leases expire and the sweeper re-publishes them.
"""
from __future__ import annotations

import hashlib
import os
import socket
import uuid

HOST_TAG = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def owner_token() -> str:
    """A fresh owner token for this process (fits `Trace.lease_owner`, 32 characters)."""
    return f"{HOST_TAG}:{os.getpid()}:{uuid.uuid4().hex[:14]}"


def owner_is_gone(owner: str) -> bool:
    """True only when `owner` is a process of this host that has exited (a reused pid counts as alive: safe)."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != HOST_TAG or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
