"""What the OpenAPI document says about the pieces every endpoint shares: the API-key security scheme, the error
envelope and the `Retry-After` of a 503.

Importing this module registers the security scheme with drf-spectacular (extensions register themselves when their
class is defined); both apps' API modules import their error documentation from here, so the scheme is registered
whenever the schema is generated.
"""
from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from rest_framework import serializers

# The two ways to send a key, as alternatives: a client generator offers either, Swagger UI's "Authorize" both.
AUTHORIZATION_SCHEME = "ApiKeyAuth"
X_API_KEY_SCHEME = "XApiKey"


class TenantApiKeyScheme(OpenApiAuthenticationExtension):
    """Describes `hypergraph_site.api.auth.TenantApiKeyAuthentication`: one key, in either of two headers."""

    target_class = "hypergraph_site.api.auth.TenantApiKeyAuthentication"
    name = [AUTHORIZATION_SCHEME, X_API_KEY_SCHEME]

    def get_security_requirement(self, auto_schema) -> list[dict[str, list]]:
        # A list means "any one of these" (OR); a single dict with both names would demand both headers (AND).
        return [{AUTHORIZATION_SCHEME: []}, {X_API_KEY_SCHEME: []}]

    def get_security_definition(self, auto_schema) -> list[dict[str, str]]:
        return [
            {"type": "apiKey", "in": "header", "name": "Authorization",
             "description": "`Authorization: Api-Key <key>` (the value includes the `Api-Key ` prefix). Keys are "
                            "made by `manage.py create_tenant` and carry scopes: `traces:write` for `/ingest`, "
                            "`traces:read` for reading `/v1/...`, `traces:delete` for deleting a trace."},
            {"type": "apiKey", "in": "header", "name": "X-API-Key",
             "description": "`X-API-Key: <key>`, the same key without a prefix."},
        ]


class ErrorSerializer(serializers.Serializer):
    path = serializers.CharField(allow_blank=True, help_text="Where in the request the problem is, dotted with "
                                                             "[i] for list items (`payload.shape[0]`); empty for the "
                                                             "request as a whole.")
    message = serializers.CharField(help_text="What is wrong, and the limit or setting involved when there is one.")


class ErrorsSerializer(serializers.Serializer):
    """Every 4xx and 5xx body: a list of problems, each with where it is and what it is."""

    errors = ErrorSerializer(many=True, min_length=1)


def error_example(status: int, message: str, path: str = "", name: str | None = None) -> OpenApiExample:
    return OpenApiExample(name or str(status), value={"errors": [{"path": path, "message": message}]},
                          status_codes=[status], response_only=True)


def error_docs(description: str, *examples: OpenApiExample) -> OpenApiResponse:
    """A documented error status: the envelope, what the status means here, and real messages as examples."""
    return OpenApiResponse(ErrorsSerializer, description=description, examples=list(examples))


def api_key_errors(scope: str) -> dict[int, OpenApiResponse]:
    """The answers every endpoint behind an API key can give besides its own: no key, no scope, no database."""
    return {
        401: error_docs("No key, or a key that is unknown, revoked or expired",
                        error_example(401, "Authentication credentials were not provided.", name="no key"),
                        error_example(401, "API key is unknown, revoked or expired.", name="bad key")),
        403: error_docs(f"The key lacks the `{scope}` scope",
                        error_example(403, f"This API key lacks the '{scope}' scope.")),
        503: error_docs("The database is unreachable; nothing was stored, retry after `Retry-After` seconds",
                        error_example(503, "the database is unreachable; nothing was stored, retry later")),
    }


RETRY_AFTER = OpenApiParameter("Retry-After", int, OpenApiParameter.HEADER, response=[503],
                               description="Seconds to wait before retrying (`RETRY_AFTER_S`)")
