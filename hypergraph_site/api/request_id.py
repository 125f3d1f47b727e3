"""`X-Request-ID`: taken from the client when it is a sane id, else made up; echoed on every response and bound
into the log context, from where the published stages carry it to the workers (`explainer.log_context`)."""
from __future__ import annotations

import re
import uuid
from typing import Callable

import structlog
from django.http import HttpRequest, HttpResponse

HEADER = "X-Request-ID"
# Ids a client may choose: short, and nothing that could forge a log line or a header.
_VALID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_of(request: HttpRequest) -> str:
    sent = request.headers.get(HEADER, "")
    return sent if _VALID.fullmatch(sent) else uuid.uuid4().hex


class RequestIdMiddleware:
    """Binds a fresh log context holding the request id for the request, and echoes the id on the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_of(request)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            response = self.get_response(request)
            response[HEADER] = request_id
            return response
        finally:
            structlog.contextvars.clear_contextvars()
