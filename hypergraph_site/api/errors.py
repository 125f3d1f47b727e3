"""One error shape for every 4xx and 5xx an API client can meet: `{"errors": [{"path", "message"}]}`.

Inside the API views (DRF's exception handler), and outside them: a trailing slash the client added, a route that
does not exist, a crash. Browsers asking for HTML, and the admin, keep Django's pages; an API client never gets an
HTML page it cannot parse.
"""
from __future__ import annotations

import logging
from typing import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .auth import auth_denial_audit

logger = logging.getLogger(__name__)

# Prefixes whose routes keep Django's trailing-slash convention.
SLASHED_PREFIXES = ("/admin/", "/api/", "/static/")


def error_body(message: str, path: str = "") -> dict:
    return {"errors": [{"path": path, "message": message}]}


def error_response(status: int, message: str, path: str = "", headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(message, path), status=status, headers=headers)


def exception_handler(exc, context) -> Response | None:
    if isinstance(exc, (OperationalError, InterfaceError)):
        # The database is down or restarting: a retryable 503 (nothing was committed), never an HTML 500.
        logger.warning("database unavailable: %s", exc)
        return error_response(503, "the database is unreachable; nothing was stored, retry later",
                              headers={"Retry-After": str(settings.RETRY_AFTER_S)})
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if response.status_code in (401, 403):
        auth_denial_audit(context["request"], status=response.status_code, reason=str(exc))
    detail = response.data.get("detail", response.data) if isinstance(response.data, dict) else response.data
    response.data = error_body(str(detail))
    return response


class StripApiSlashMiddleware:
    """`/ingest/` and `/v1/traces/t-1/` reach the same views as `/ingest` and `/v1/traces/t-1`.

    Stripping before routing (rather than redirecting) keeps a POST body and answers in one round trip.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if len(path) > 1 and path.endswith("/") and not path.startswith(SLASHED_PREFIXES):
            request.path_info = path.rstrip("/")
        return self.get_response(request)


def _wants_html(request: HttpRequest) -> bool:
    return request.path.startswith("/admin/") or "text/html" in request.headers.get("Accept", "")


def json_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _wants_html(request):
        return defaults.page_not_found(request, exception)
    return JsonResponse(error_body(f"no such endpoint: {request.method} {request.path} (see /api/schema/)"),
                        status=404)


def json_server_error(request: HttpRequest) -> HttpResponse:
    if _wants_html(request):
        return defaults.server_error(request)
    return JsonResponse(error_body("internal error; it was logged"), status=500)
