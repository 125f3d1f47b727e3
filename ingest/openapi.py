"""`/ingest`'s request body in the OpenAPI document: the validator's own JSON Schema, with the limits in force.

Why not serializers: bodies are checked against `schemas/event.schema.json` (JSON Schema 2020-12) with this
deployment's limits written in (`validation.py`). A serializer copy would drift from it, and could not say what it
says: `shape` as `prefixItems` with a limit per axis, `data` as a base64 string or nested lists, inline rows or
shards but not both. The document is OpenAPI 3.1, whose schema objects are JSON Schema 2020-12, so the schema goes in
as it is, with two rewrites besides references and what it implies: the top-level `allOf` of "if `event_type` is X then
`payload` is `$defs/X`" becomes a `oneOf` of one object per event type, with a `discriminator` on `event_type`, and
the activations payload's "inline rows or shards" becomes a `oneOf` of two complete objects. That accepts exactly
the same bodies (`tests/api/test_openapi.py` checks it against the validator), and it is the form client generators
turn into a type per event and per kind of activations payload (they ignore `if`/`then`, and make a payload whose
alternatives only add requirements an untyped value). openapi-python-client and openapi-typescript generate clients
from the document without a warning about it.
"""
from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework import serializers

from .validation import Limits, event_schema

INGEST_EVENT = "IngestEvent"
# A payload definition that is one of several alternatives (its `oneOf` only adds requirements) becomes one object
# per alternative, so a client gets a type for each instead of one type with every property optional. Each is named
# by a property only it requires.
ALTERNATIVES = {"activations": {"data": "InlineActivations", "shards": "ShardedActivations"}}


def _component(def_name: str) -> str:
    return f"{def_name.capitalize()}Payload"


def _as_components(node: Any) -> Any:
    """The schema with its `#/$defs/x` references pointing at the components the definitions become, and what it
    implies said outright for generators (and drf-spectacular's enum naming): `type: string` on enums of strings,
    `items: {}` on arrays of anything."""
    if isinstance(node, list):
        return [_as_components(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: (f"#/components/schemas/{_component(value.rsplit('/', 1)[1])}"
                  if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/")
                  else _as_components(value))
            for key, value in node.items()}
    if "enum" in node and "type" not in node and all(isinstance(value, str) for value in node["enum"]):
        node["type"] = "string"
    if "array" in node.get("type", ()) and "items" not in node and "prefixItems" not in node:
        node["items"] = {}
    return node


def ingest_event_components(limits: Limits) -> dict[str, dict[str, Any]]:
    """OpenAPI schema components for an `/ingest` body under `limits`: `IngestEvent` (one of the event objects,
    told apart by `event_type`), `CompletionEvent`, `ActivationsEvent`, `FinalizeEvent` and their payloads."""
    schema = _as_components(event_schema(limits))
    components = {}
    for name, definition in schema["$defs"].items():
        components[_component(name)] = definition
        if name in ALTERNATIVES:
            components.update(_split_alternatives(definition, ALTERNATIVES[name]))
            components[_component(name)] = {"description": definition["description"], "oneOf": [
                {"$ref": f"#/components/schemas/{alternative}"} for alternative in ALTERNATIVES[name].values()]}
    payload_of = {rule["if"]["properties"]["event_type"]["const"]: rule["then"]["properties"]["payload"]
                  for rule in schema["allOf"]}
    events = {}
    for event_type in schema["properties"]["event_type"]["enum"]:
        name = f"{event_type.capitalize()}Event"
        components[name] = {
            "type": "object",
            "required": schema["required"],
            "additionalProperties": schema["additionalProperties"],
            "properties": {**schema["properties"], "event_type": {"type": "string", "const": event_type},
                           "payload": payload_of[event_type]},
        }
        events[event_type] = f"#/components/schemas/{name}"
    components[INGEST_EVENT] = {
        "title": schema["title"],
        "required": schema["required"],
        "oneOf": [{"$ref": ref} for ref in events.values()],
        "discriminator": {"propertyName": "event_type", "mapping": events},
    }
    return components


def _split_alternatives(definition: dict[str, Any], names: dict[str, str]) -> dict[str, dict[str, Any]]:
    """`{properties, oneOf: [{required, not}, ...]}` as one complete object per branch: the same bodies are valid (a
    body meets exactly one branch's requirements and the shared properties), but each branch has a type."""
    shared = {key: value for key, value in definition.items() if key not in ("oneOf", "description")}
    split = {}
    for branch in definition["oneOf"]:
        name = next(names[key] for key in branch["required"] if key in names)
        split[name] = {**shared, **branch}
    return split


class IngestEventSerializer(serializers.Serializer):
    """Names the `/ingest` body for drf-spectacular; `IngestEventDocs` says what it is. Bodies are validated by
    `validation.py` (the view parses them itself), never by this class."""


class IngestEventDocs(OpenApiSerializerExtension):
    target_class = IngestEventSerializer

    def get_name(self, auto_schema, direction) -> str:
        return INGEST_EVENT

    def map_serializer(self, auto_schema, direction) -> dict[str, Any]:
        components = ingest_event_components(Limits.from_settings())
        for name, schema in components.items():
            if name != INGEST_EVENT:
                auto_schema.registry.register_on_missing(
                    ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA, object=name, schema=schema))
        return components[INGEST_EVENT]
