"""Single-threaded BLAS for the duration of an attribution call.

The methods issue many small matrix products (per-position Gram matrices, coalition masks). Multi-threaded OpenBLAS
splits each of them across cores and then waits for its threads; when the cores are busy with anything else (another
Celery worker, the SAE decode) every such wait costs a scheduler time slice, and measured calls became 10–100x slower,
which breaks the time budget. One thread per call is stable and, at these sizes, barely slower on an idle machine;
parallelism comes from running several workers instead. `threadpoolctl` is optional: without it BLAS keeps its
default.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache


@cache
def _controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    controller = _controller()
    if controller is None:
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield
