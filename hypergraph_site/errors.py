"""What an API client meets outside the views: a trailing slash it added, a route that does not exist, a crash.

Browsers asking for HTML, and the admin, keep Django's pages; every API client gets `{"errors": [{"path",
"message"}]}` with the status, never an HTML page it cannot parse.
"""
from __future__ import annotations

from typing import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

# Prefixes whose routes keep Django's trailing-slash convention.
SLASHED_PREFIXES = ("/admin/", "/api/", "/static/")


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


def _envelope(status: int, message: str) -> JsonResponse:
    return JsonResponse({"errors": [{"path": "", "message": message}]}, status=status)


def json_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _wants_html(request):
        return defaults.page_not_found(request, exception)
    return _envelope(404, f"no such endpoint: {request.method} {request.path} (see /api/schema/)")


def json_server_error(request: HttpRequest) -> HttpResponse:
    if _wants_html(request):
        return defaults.server_error(request)
    return _envelope(500, "internal error; it was logged")
