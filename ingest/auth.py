"""Tenant API-key authentication: `Authorization: Api-Key <key>` or `X-API-Key: <key>`."""
from __future__ import annotations

from dataclasses import dataclass

from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from explainer.models import ApiKey, Tenant


@dataclass(frozen=True)
class TenantPrincipal:
    """What `request.user` holds for an API-key request: the tenant and the key's scopes."""

    tenant: Tenant
    key: ApiKey
    is_authenticated: bool = True

    def has_scope(self, scope: str) -> bool:
        return self.key.has_scope(scope)


def _key_from_headers(request: Request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "api-key" and value.strip():
        return value.strip()
    return request.META.get("HTTP_X_API_KEY", "").strip() or None


class TenantApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[TenantPrincipal, ApiKey] | None:
        key = _key_from_headers(request)
        if key is None:
            return None
        try:
            api_key = ApiKey.objects.get_from_key(key)
        except ApiKey.DoesNotExist:
            api_key = None
        if api_key is None or api_key.has_expired:
            raise exceptions.AuthenticationFailed("API key is unknown, revoked or expired.")
        return TenantPrincipal(tenant=api_key.tenant, key=api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        # Returning a challenge makes DRF answer 401 (not 403) when no key was sent.
        return 'Api-Key realm="hypergraph-sidecar"'


class HasScope(permissions.BasePermission):
    """Grants access when the key carries the view's `required_scope`."""

    message = "This API key lacks the required scope."

    def has_permission(self, request: Request, view) -> bool:
        principal = request.user
        if not getattr(principal, "is_authenticated", False):
            return False
        required = getattr(view, "required_scope")
        self.message = f"This API key lacks the '{required}' scope."
        return principal.has_scope(required)
