"""Checking JSON against the OpenAPI document the server serves: schemas found by path and status, `$ref`s resolved."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator


def pointer(*parts: str) -> str:
    """A JSON pointer (RFC 6901) to the part of the document named by `parts`."""
    return "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def schema_errors(spec: dict, at: str, instance: Any) -> list[str]:
    """Why `instance` does not match the schema at `at` in `spec` (empty when it does).

    The whole document is the root schema, so its `#/components/...` references resolve as they do for a client;
    OpenAPI 3.1's schema objects are JSON Schema 2020-12, and the document's own keys are unknown keywords to it.
    """
    root = {**spec, "$ref": at}
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in Draft202012Validator(root).iter_errors(instance)]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0]


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def mismatches(spec: dict, path: str, method: str, answer: Answer) -> list[str]:
    """How a real answer of `method path` departs from what the document says of its status (empty if it does not):
    an undocumented status, another media type, a documented header missing, a body the schema refuses."""
    responses = spec["paths"][path][method]["responses"]
    status = str(answer.status)
    if status not in responses:
        return [f"{method.upper()} {path} answered {status}, which is not documented ({sorted(responses)})"]
    documented = responses[status]
    problems = [f"header {name} missing" for name in documented.get("headers", {})
                if name.lower() not in answer.headers]
    if not documented.get("content") and not answer.body:
        return problems  # a documented answer without a body (204)
    if answer.content_type not in documented.get("content", {}):
        return [*problems, f"{answer.content_type} is not among {sorted(documented.get('content', {}))}"]
    if answer.content_type != "application/json":
        return problems
    at = pointer("paths", path, method, "responses", status, "content", answer.content_type, "schema")
    return problems + schema_errors(spec, at, json.loads(answer.body))
