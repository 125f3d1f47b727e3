"""Log lines: JSON with the bound context, PII masked (tracebacks too), console lines for people; the request id
middleware binds the id for the request only, and stage messages carry it to the worker."""
from __future__ import annotations

import io
import json
import logging

import pytest
import structlog
from django.http import HttpResponse
from django.test import RequestFactory

from explainer.log_context import message_headers, task_context_bind
from hypergraph_site import logs
from hypergraph_site.api.request_id import RequestIdMiddleware


def _logger(log_format: str, *, pii_scrub: bool = True) -> tuple[logging.Logger, io.StringIO]:
    """A private stdlib logger whose handler renders with the formatter `logs.setup` configures."""
    formatter_config = dict(logs.setup(log_format=log_format, level="INFO", pii_scrub=pii_scrub,
                                       mask_numbers=False)["formatters"]["structlog"])
    factory = formatter_config.pop("()")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(factory(**formatter_config))
    logger = logging.getLogger(f"test.logs.{log_format}.{pii_scrub}")
    logger.handlers, logger.propagate, logger.level = [handler], False, logging.INFO
    return logger, stream


@pytest.fixture(autouse=True)
def _fresh_context():
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()


def test_a_stdlib_line_is_json_with_the_bound_context_and_pii_masked():
    logger, stream = _logger("json")
    structlog.contextvars.bind_contextvars(request_id="r-1", tenant="alice", trace_id="t-1", run_id="u-1",
                                           stage="load")
    logger.warning("mail from %s failed", "bob@example.com")
    line = json.loads(stream.getvalue())
    assert line["event"] == "mail from [EMAIL] failed"
    assert {k: line[k] for k in ("request_id", "tenant", "trace_id", "run_id", "stage", "level", "logger")} == {
        "request_id": "r-1", "tenant": "alice", "trace_id": "t-1", "run_id": "u-1", "stage": "load",
        "level": "warning", "logger": logger.name}


def test_a_traceback_is_masked_too():
    logger, stream = _logger("json")
    try:
        raise ValueError("bad card 4111 1111 1111 1111")
    except ValueError:
        logger.exception("failed")
    line = json.loads(stream.getvalue())
    assert "[CARD]" in line["exception"] and "4111" not in stream.getvalue()


def test_scrubbing_off_leaves_lines_as_logged():
    logger, stream = _logger("json", pii_scrub=False)
    logger.info("from bob@example.com")
    assert json.loads(stream.getvalue())["event"] == "from bob@example.com"


def test_console_lines_are_for_people():
    logger, stream = _logger("console")
    logger.info("hello")
    assert "hello" in stream.getvalue() and not stream.getvalue().startswith("{")


def test_the_request_id_is_bound_for_the_request_and_carried_by_stage_messages():
    seen = {}

    def view(request):
        seen.update(structlog.contextvars.get_contextvars(), headers=message_headers())
        return HttpResponse()

    response = RequestIdMiddleware(view)(RequestFactory().get("/", HTTP_X_REQUEST_ID="abc-123"))
    assert response["X-Request-ID"] == "abc-123"
    assert seen == {"request_id": "abc-123", "headers": {"request_id": "abc-123"}}
    assert structlog.contextvars.get_contextvars() == {} and message_headers() == {}


def test_a_task_starts_with_only_the_request_id_it_was_sent_with():
    structlog.contextvars.bind_contextvars(trace_id="left-over-from-the-last-task")
    task_context_bind({"request_id": "abc-123"})
    assert structlog.contextvars.get_contextvars() == {"request_id": "abc-123"}
    task_context_bind(None)
    assert structlog.contextvars.get_contextvars() == {}
