"""Absolute links to a trace, in every answer that names one (a 202 from /ingest, a trace list, a graph not ready).

/ingest answers every accepted event with its trace's link, and a list page holds one per trace: resolving the route
for each cost more than building the rest of the answer. The route is resolved once; a link is that path plus the
trace id, quoted exactly as `reverse` quotes a path argument.
"""
from __future__ import annotations

from functools import cache
from urllib.parse import quote

from django.http import HttpRequest
from django.urls import get_script_prefix, reverse

# What `reverse` leaves unquoted in an argument (RFC 3986 sub-delimiters, plus ~ : @); trace ids, by the event
# schema's pattern, never need quoting at all.
_UNQUOTED = "!$&'()*+,;=~:@"


@cache
def _trace_route() -> str:
    """The trace detail route up to its trace id, without the script prefix (which may differ per request)."""
    marker = "0"
    return reverse("trace-detail", args=[marker])[len(get_script_prefix()):-len(marker)]


def trace_url(request: HttpRequest, trace_id: str) -> str:
    """The absolute URL of a trace's status (`GET /v1/traces/<trace_id>`)."""
    return request.build_absolute_uri(f"{get_script_prefix()}{_trace_route()}{quote(trace_id, safe=_UNQUOTED)}")
