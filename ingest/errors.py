"""One error shape for every 4xx and 503: `{"errors": [{"path", "message"}]}`."""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


def error_response(status: int, message: str, path: str = "", headers: dict[str, str] | None = None) -> Response:
    return Response({"errors": [{"path": path, "message": message}]}, status=status, headers=headers)


def exception_handler(exc, context) -> Response | None:
    if isinstance(exc, (OperationalError, InterfaceError)):
        # The database is down or restarting: a retryable 503 (nothing was committed), never an HTML 500.
        logger.warning("database unavailable: %s", exc)
        return error_response(503, "the database is unreachable; nothing was stored, retry later",
                              headers={"Retry-After": str(settings.RETRY_AFTER_S)})
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data.get("detail", response.data) if isinstance(response.data, dict) else response.data
    response.data = {"errors": [{"path": "", "message": str(detail)}]}
    return response
