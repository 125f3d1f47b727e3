"""Which tenant's rows a staff user may see in the admin, decided once per request.

Every admin list, detail page, search, filter, autocomplete and download starts from a model admin's
`get_queryset`, so narrowing that one queryset scopes them all; `TenantScopedAdmin` does it, and turns a missing
object into a 404 (Django's admin would redirect to its index instead, which tells a visitor the object exists).
"""
from __future__ import annotations

from dataclasses import dataclass

from django.contrib import admin
from django.db.models import QuerySet
from django.http import Http404, HttpRequest

from .models import StaffTenant


@dataclass(frozen=True)
class AdminScope:
    """`everything` for a superuser; otherwise the one tenant a staff user is linked to, or none at all."""

    everything: bool
    tenant_id: int | None

    @property
    def can_view(self) -> bool:
        return self.everything or self.tenant_id is not None

    def narrow(self, queryset: QuerySet, tenant_path: str) -> QuerySet:
        """`queryset` limited to this scope; `tenant_path` is the lookup from the model to its tenant's pk."""
        if self.everything:
            return queryset
        if self.tenant_id is None:
            return queryset.none()
        return queryset.filter(**{tenant_path: self.tenant_id})


def admin_scope(request: HttpRequest) -> AdminScope:
    """The scope of the request's user, looked up once per request (lists ask many times)."""
    cached = getattr(request, "_admin_scope", None)
    if cached is not None:
        return cached
    user = request.user
    if not (user.is_active and user.is_staff):
        scope = AdminScope(everything=False, tenant_id=None)
    elif user.is_superuser:
        scope = AdminScope(everything=True, tenant_id=None)
    else:
        tenant_id = StaffTenant.objects.filter(user_id=user.pk).values_list("tenant_id", flat=True).first()
        scope = AdminScope(everything=False, tenant_id=tenant_id)
    request._admin_scope = scope
    return scope


class ReadOnlyForScope:
    """Admin permissions of rows the pipeline owns: visible to whoever has an admin scope, never edited here."""

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return admin_scope(request).can_view

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class TenantScopedAdmin(ReadOnlyForScope, admin.ModelAdmin):
    """A read-only admin over rows that belong to a tenant through `tenant_path`.

    Viewing follows the tenant link rather than Django's model permissions: linking a staff user to a tenant is the
    whole grant. Nothing can be added, changed or deleted here; the pipeline owns these rows.
    """

    tenant_path = "tenant"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return admin_scope(request).narrow(super().get_queryset(request), self.tenant_path)

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} with id {object_id!r}.")
        return obj

    def has_module_permission(self, request: HttpRequest) -> bool:
        return admin_scope(request).can_view


class SuperuserOnlyAdmin(admin.ModelAdmin):
    """Tenants, their keys and staff links span tenants, so only a superuser manages them."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request)
