"""One error shape for every 4xx: `{"errors": [{"path", "message"}]}`."""
from __future__ import annotations

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def error_response(status: int, message: str, path: str = "", headers: dict[str, str] | None = None) -> Response:
    return Response({"errors": [{"path": path, "message": message}]}, status=status, headers=headers)


def exception_handler(exc, context) -> Response | None:
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data.get("detail", response.data) if isinstance(response.data, dict) else response.data
    response.data = {"errors": [{"path": "", "message": str(detail)}]}
    return response
