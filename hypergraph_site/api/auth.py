"""Tenant API-key authentication: `Authorization: Api-Key <key>` or `X-API-Key: <key>`.

A verified key is remembered in the process for `API_KEY_CACHE_S` seconds, so a busy client's requests skip the key
and tenant lookups (two database round trips of the few an accepted event costs). A revoked or deleted key stops
working at once in the process that revoked it and within `API_KEY_CACHE_S` in the others.
"""
from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass

import structlog
from django.conf import settings
from django.db import DatabaseError
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from explainer.audit import audit_record, key_actor
from explainer.models import ApiKey, Tenant

logger = logging.getLogger(__name__)

CACHE_MAX_KEYS = 1024
# The public part of a key as the key library writes it (`<prefix>.<secret>`); anything else sent is not quoted.
_KEY_PREFIX = re.compile(r"([A-Za-z0-9]{8})\.[A-Za-z0-9]+")


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


_verified: dict[str, tuple[float, ApiKey]] = {}


@receiver([post_save, post_delete], sender=ApiKey)
def _forget_verified_keys(**kwargs) -> None:
    _verified.clear()


def _verified_key(key: str) -> ApiKey | None:
    """The usable key (tenant loaded) for a plaintext key, from the process cache or the database."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    cached = _verified.get(digest)
    if cached is not None and time.monotonic() - cached[0] < settings.API_KEY_CACHE_S:
        return cached[1]
    try:
        api_key = ApiKey.objects.get_from_key(key)
    except ApiKey.DoesNotExist:
        return None
    api_key.tenant  # noqa: B018 - load the tenant now, so cached hits need no query for it
    if len(_verified) >= CACHE_MAX_KEYS:
        _verified.clear()
    _verified[digest] = (time.monotonic(), api_key)
    return api_key


class TenantApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[TenantPrincipal, ApiKey] | None:
        key = _key_from_headers(request)
        if key is None:
            return None
        api_key = _verified_key(key)
        if api_key is None or api_key.has_expired:
            raise exceptions.AuthenticationFailed("API key is unknown, revoked or expired.")
        structlog.contextvars.bind_contextvars(tenant=api_key.tenant.slug)
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


def auth_denial_audit(request: Request, *, status: int, reason: str) -> None:
    """Audit a refused request (401 or 403): the key's public prefix when one was sent, never the key or the
    `Authorization` header. A refusal must not become a 500 because the audit write failed: that is logged."""
    principal = request.user
    tenant = principal.tenant if isinstance(principal, TenantPrincipal) else None
    sent = _key_from_headers(request)
    prefix = _KEY_PREFIX.fullmatch(sent) if sent else None
    actor = key_actor(prefix.group(1)) if prefix else ("key:malformed" if sent else "anonymous")
    try:
        audit_record(action="auth.denied", actor=actor, tenant=tenant, target=f"{request.method} {request.path}"[:300],
                     details={"status": status, "reason": reason})
    except DatabaseError:
        logger.exception("could not audit a refused request (%s %s)", request.method, request.path)
