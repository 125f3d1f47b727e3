"""Log lines as JSON objects (structlog), from our code and every library, in the web process and the workers.

Every line carries what is bound in the context where it was logged: `request_id` and `tenant` (bound by
`api.request_id` and the API-key authentication), `trace_id`, `run_id` and `stage` (bound by the ingest view and
by the worker's stage runner). Stdlib `logging` calls, ours and libraries' (Django, Celery, gunicorn), go through
structlog's `ProcessorFormatter`, so they come out in the same shape. PII is masked in every line when `PII_SCRUB`
is on, after exceptions are formatted, so a traceback quoting a prompt is masked too.
https://www.structlog.org/en/stable/standard-library.html#rendering-using-structlog-based-formatters-within-logging
"""
from __future__ import annotations

import logging
import os
from functools import partial
from typing import Any

import structlog

from explainer.pii import scrub_value

# Added to every line, whether logged through structlog or stdlib logging.
_SHARED = (
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
)


def scrub_event(logger: Any, method: str, event: dict, *, mask_numbers: bool) -> dict:
    """structlog processor: mask PII in every string of the line (the message, bound values, the traceback)."""
    return scrub_value(event, mask_numbers=mask_numbers)


def setup(*, log_format: str, level: str, pii_scrub: bool, mask_numbers: bool) -> dict:
    """Configure structlog for this process and return the `LOGGING` dict that renders stdlib records with it.

    Python warnings become log lines too. In JSON mode Hugging Face's progress bars are turned off (they draw on
    stderr, between the lines a log collector parses); the environment is read when transformers is imported,
    which is after settings.
    """
    logging.captureWarnings(True)
    if log_format == "json":
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.PositionalArgumentsFormatter(),
                    structlog.processors.StackInfoRenderer(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    scrub = [partial(scrub_event, mask_numbers=mask_numbers)] if pii_scrub else []
    renderer = structlog.processors.JSONRenderer() if log_format == "json" else structlog.dev.ConsoleRenderer()
    render = [structlog.processors.format_exc_info, *scrub, renderer]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structlog": {
            "()": structlog.stdlib.ProcessorFormatter,
            "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta, *render],
            "foreign_pre_chain": list(_SHARED),
        }},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structlog"}},
        "root": {"handlers": ["console"], "level": level},
        # Django's own loggers would also print through their handlers: here they reach the root's, once.
        "loggers": {"django": {"handlers": [], "propagate": True},
                    "django.server": {"handlers": [], "propagate": True}},
    }
