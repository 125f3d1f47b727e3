"""The admin: a read-only trace browser scoped to the staff user's tenant, the graph view, and re-running dead letters.

Traces, events, explanations and dead letters are written by the pipeline only, so their pages show and never edit.
Lists read everything they show in one query (counts come from a join, never a query per row); the explanation's
HIF document is never loaded by a list.
"""
from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timezone import localtime
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from . import admin_views
from .admin_scope import ReadOnlyForScope, SuperuserOnlyAdmin, TenantScopedAdmin, admin_scope
from .event_summary import event_summary, with_event_summary
from .models import ApiKey, DeadLetter, Explanation, StaffTenant, Tenant, Trace, TraceEvent, TraceStatus
from .audit import admin_actor
from .services import api_key_audit, api_key_revoke, dead_letters_replay
from .timeline import stage_timeline, total_seconds

admin.site.site_header = "hypergraph-sidecar"
admin.site.site_title = "hypergraph-sidecar"
admin.site.index_title = "Trace browser"


def status_badge(status: str) -> SafeString:
    return format_html('<span class="hg-status hg-status--{}">{}</span>', status, status)


def trace_link(trace: Trace) -> SafeString:
    url = reverse("admin:explainer_trace_change", args=[trace.pk])
    return format_html('<a href="{}">{}</a>', url, trace.trace_id)


class OfTraceColumns:
    """The trace and tenant columns of an admin whose rows belong to a trace (events, explanations, dead
    letters)."""

    @admin.display(description="trace", ordering="trace__trace_id")
    def trace_column(self, row: TraceEvent | Explanation | DeadLetter) -> SafeString:
        return trace_link(row.trace)

    @admin.display(description="tenant", ordering="trace__tenant__slug")
    def tenant_slug(self, row: TraceEvent | Explanation | DeadLetter) -> str:
        return row.trace.tenant.slug


def explanation_of(trace: Trace) -> Explanation | None:
    """The trace's explanation as the list's join fetched it; None before the trace is complete."""
    try:
        return trace.explanation
    except Explanation.DoesNotExist:
        return None


def graph_link(trace_pk: int, status: str) -> SafeString | str:
    if status != TraceStatus.COMPLETE:
        return "—"
    return format_html('<a class="hg-graph-link" href="{}">graph</a>',
                       reverse("admin:explainer_trace_graph", args=[trace_pk]))


# --- Tenants, keys and who may see what (superusers only) ---------------------------------------------

@admin.register(Tenant)
class TenantAdmin(SuperuserOnlyAdmin):
    list_display = ("slug", "name", "retention_days", "created")
    search_fields = ("slug", "name")
    fields = ("slug", "name", "retention_days")

    def get_deleted_objects(self, objs, request: HttpRequest):
        """A superuser deleting a tenant deletes its traces, events and the rest with it (and, through
        `explainer.signals`, what they stored in the object store and Redis), although those pages are read-only:
        the pipeline's rows are never edited one by one, but they go with their tenant."""
        deleted, counts, _, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected


if admin.site.is_registered(APIKey):
    # The library registers its own key model; ours (with tenant and scopes) is the only one people should see.
    admin.site.unregister(APIKey)


@admin.register(ApiKey)
class ApiKeyAdmin(SuperuserOnlyAdmin, APIKeyModelAdmin):
    list_display = ("name", "prefix", "tenant", "scopes", "revoked", "created", "expiry_date")
    list_filter = ("revoked", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("name", "prefix", "tenant__slug")

    def save_model(self, request: HttpRequest, obj: ApiKey, form, change: bool) -> None:
        """Audit a key created here, and revoke through the service so the revocation is audited; the admin's
        change view already runs in a transaction, so the audit row commits with the change."""
        actor = admin_actor(request.user.get_username())
        revoking = change and obj.revoked and not ApiKey.objects.filter(pk=obj.pk, revoked=True).exists()
        if revoking:
            obj.revoked = False
        super().save_model(request, obj, form, change)
        if revoking:
            api_key_revoke(api_key=obj, actor=actor)
        elif not change:
            api_key_audit(api_key=obj, action="api_key.created", actor=actor)

    def delete_model(self, request: HttpRequest, obj: ApiKey) -> None:
        api_key_audit(api_key=obj, action="api_key.deleted", actor=admin_actor(request.user.get_username()))
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        actor = admin_actor(request.user.get_username())
        for api_key in queryset.select_related("tenant"):
            api_key_audit(api_key=api_key, action="api_key.deleted", actor=actor)
        super().delete_queryset(request, queryset)


class StaffTenantInline(admin.StackedInline):
    """The tenant a staff user is confined to; only a superuser may set it, or a user could widen their own view."""

    model = StaffTenant
    can_delete = True
    verbose_name_plural = "tenant (a staff user without one sees no traces unless superuser)"

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser

    has_add_permission = has_change_permission = has_delete_permission = has_view_permission


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class StaffUserAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, StaffTenantInline]


# --- Traces and their events --------------------------------------------------------------------------

class TraceEventInline(ReadOnlyForScope, admin.TabularInline):
    model = TraceEvent
    fields = ("event_type", "granularity", "summary", "received")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return with_event_summary(super().get_queryset(request))

    @admin.display(description="what it carried")
    def summary(self, event: TraceEvent) -> str:
        return event_summary(event)


@admin.register(Trace)
class TraceAdmin(TenantScopedAdmin):
    list_display = ("trace_id", "tenant_slug", "status_badge", "stage", "model_column", "granularity", "nodes",
                    "incidences", "seconds", "finished", "graph")
    list_filter = ("status", ("tenant", admin.RelatedOnlyFieldListFilter), "granularity", "model_name", "created")
    search_fields = ("trace_id",)
    search_help_text = "Search by trace id"
    ordering = ("-created", "-id")
    list_per_page = 50
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": (("trace_id", "tenant_slug", "status_badge"), ("stage", "granularity", "model_name"),
                           ("model_hash", "run_id"), ("created", "finalized_at", "finished_at"),
                           ("backpressure_level", "degraded"))}),
        ("Graph", {"fields": ("graph_summary",)}),
        ("Stage timeline", {"fields": ("timeline",)}),
    )
    readonly_fields = ("trace_id", "tenant_slug", "status_badge", "stage", "model_name", "model_hash", "granularity",
                       "run_id", "created", "finalized_at", "finished_at", "timeline", "graph_summary", "error",
                       "backpressure_level", "degraded")
    inlines = [TraceEventInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Joined for the rows shown only: counts and filter choices are computed without the join, and the
        # explanation's document (megabytes) is never read.
        return (super().get_queryset(request).select_related("tenant", "explanation")
                .defer("explanation__document"))

    def get_list_filter(self, request: HttpRequest):
        """A user confined to one tenant has nothing to choose, and must not see the other tenants' slugs."""
        if admin_scope(request).everything:
            return self.list_filter
        return tuple(f for f in self.list_filter if not (isinstance(f, tuple) and f[0] == "tenant"))

    def get_fieldsets(self, request: HttpRequest, obj: Trace | None = None):
        if obj is not None and obj.error:  # right under the header: it is what a person opens a failed trace for
            return (self.fieldsets[0], ("Error", {"fields": ("error",), "classes": ("hg-error",)}), *self.fieldsets[1:])
        return self.fieldsets

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/graph/", view(self.graph_view), name="explainer_trace_graph"),
            path("<path:object_id>/graph/document/", view(self.graph_document_view),
                 name="explainer_trace_graph_document"),
            path("<path:object_id>/graph/features/", view(self.graph_features_view),
                 name="explainer_trace_graph_features"),
            path("<path:object_id>/download/", view(self.download_view), name="explainer_trace_download"),
            *super().get_urls(),
        ]

    def graph_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        trace = self.get_object(request, object_id)
        context = {**self.admin_site.each_context(request), "opts": self.opts, "trace": trace,
                   "title": f"Graph of {trace.trace_id}"}
        return admin_views.graph_page(request, trace=trace, context=context)

    def graph_document_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return admin_views.graph_document(request, trace=self.get_object(request, object_id))

    def graph_features_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return admin_views.graph_features(request, trace=self.get_object(request, object_id))

    def download_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return admin_views.graph_download(request, trace=self.get_object(request, object_id))

    @admin.display(description="tenant", ordering="tenant__slug")
    def tenant_slug(self, trace: Trace) -> str:
        return trace.tenant.slug

    @admin.display(description="status", ordering="status")
    def status_badge(self, trace: Trace) -> SafeString:
        return status_badge(trace.status)

    @admin.display(description="nodes", ordering="explanation__node_count")
    def nodes(self, trace: Trace) -> int | None:
        explanation = explanation_of(trace)
        return explanation.node_count if explanation else None

    @admin.display(description="incidences", ordering="explanation__incidence_count")
    def incidences(self, trace: Trace) -> int | None:
        explanation = explanation_of(trace)
        return explanation.incidence_count if explanation else None

    @admin.display(description="model", ordering="model_name")
    def model_column(self, trace: Trace) -> str:
        return trace.model_name or "—"

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, trace: Trace) -> str:
        return localtime(trace.finished_at).strftime("%Y-%m-%d %H:%M:%S") if trace.finished_at else "—"

    @admin.display(description="seconds")
    def seconds(self, trace: Trace) -> str:
        total = total_seconds(trace.timings)
        return f"{total:.2f}" if total is not None else "—"

    @admin.display(description="")
    def graph(self, trace: Trace) -> SafeString | str:
        return graph_link(trace.pk, trace.status)

    @admin.display(description="stages")
    def timeline(self, trace: Trace) -> SafeString:
        return render_to_string("admin/explainer/trace/timeline.html",
                                {"stages": stage_timeline(trace), "total": total_seconds(trace.timings)})

    @admin.display(description="explained graph")
    def graph_summary(self, trace: Trace) -> SafeString:
        return render_to_string("admin/explainer/trace/graph_summary.html", {
            "trace": trace, "explanation": explanation_of(trace),
            "graph_url": reverse("admin:explainer_trace_graph", args=[trace.pk]),
            "downloads": admin_views.download_links(trace),
        })


@admin.register(TraceEvent)
class TraceEventAdmin(OfTraceColumns, TenantScopedAdmin):
    tenant_path = "trace__tenant"
    list_display = ("trace_column", "tenant_slug", "event_type", "granularity", "summary", "received")
    list_display_links = ("received",)  # the trace column links to the trace
    list_filter = ("event_type",)
    search_fields = ("trace__trace_id",)
    search_help_text = "Search by trace id"
    ordering = ("-id",)
    list_per_page = 100
    show_full_result_count = False
    fields = ("trace_column", "event_type", "granularity", "summary", "event_hash", "received")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # A list summarises completions only: an activations event's layer is read by reading its whole payload
        # (megabytes of inline rows), which a page of a hundred events must not do.
        return with_event_summary(super().get_queryset(request).select_related("trace__tenant"), activations=False)

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None):
        """One event's page also reads its activations' layer and shape: one payload, not a page of them."""
        event = super().get_object(request, object_id, from_field)
        return with_event_summary(TraceEvent.objects.select_related("trace__tenant")).get(pk=event.pk)

    @admin.display(description="what it carried")
    def summary(self, event: TraceEvent) -> str:
        return event_summary(event)


# --- Explanations and dead letters --------------------------------------------------------------------

@admin.register(Explanation)
class ExplanationAdmin(OfTraceColumns, TenantScopedAdmin):
    tenant_path = "trace__tenant"
    list_display = ("trace_column", "tenant_slug", "node_count", "incidence_count", "size", "created", "graph")
    list_display_links = ("created",)
    search_fields = ("trace__trace_id",)
    search_help_text = "Search by trace id"
    ordering = ("-id",)
    list_per_page = 50
    show_full_result_count = False
    fields = ("trace_column", "tenant_slug", "node_count", "incidence_count", "size", "stored_at", "meta_table",
              "created", "updated", "graph")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The document can be megabytes: the list never reads it, the page reads only its meta.
        return super().get_queryset(request).select_related("trace__tenant").defer("document")

    @admin.display(description="size", ordering="size_bytes")
    def size(self, explanation: Explanation) -> str:
        return f"{explanation.size_bytes / 1024:,.1f} KiB"

    @admin.display(description="stored at")
    def stored_at(self, explanation: Explanation) -> str:
        if not explanation.object_key:
            return "PostgreSQL (written before graphs moved to the object store)"
        return f"{explanation.object_key} (sha256 {explanation.content_sha256})"

    @admin.display(description="document meta")
    def meta_table(self, explanation: Explanation) -> SafeString:
        return render_to_string("admin/explainer/explanation/meta.html", {"meta": explanation.meta or {}})

    @admin.display(description="")
    def graph(self, explanation: Explanation) -> SafeString | str:
        return graph_link(explanation.trace_id, TraceStatus.COMPLETE)


class ReplayedFilter(admin.SimpleListFilter):
    title = "re-run"
    parameter_name = "rerun"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("waiting", "not yet"), ("done", "re-run")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("waiting", "done"):
            return queryset.filter(replayed_at__isnull=self.value() == "waiting")
        return queryset


@admin.register(DeadLetter)
class DeadLetterAdmin(OfTraceColumns, TenantScopedAdmin):
    tenant_path = "trace__tenant"
    list_display = ("trace_column", "tenant_slug", "stage", "reason", "created", "replayed_at", "quarantined")
    list_display_links = ("created",)
    list_filter = ("stage", ReplayedFilter, "quarantined")
    search_fields = ("trace__trace_id",)
    search_help_text = "Search by trace id"
    ordering = ("-id",)
    list_per_page = 100
    show_full_result_count = False
    fields = ("trace_column", "tenant_slug", "run_id", "stage", "reason", "created", "replayed_at", "quarantined")
    readonly_fields = fields
    actions = ["rerun"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("trace__tenant")

    def has_rerun_permission(self, request: HttpRequest) -> bool:
        return admin_scope(request).can_view

    @admin.action(description="Re-run the selected dead-lettered traces", permissions=["rerun"])
    def rerun(self, request: HttpRequest, queryset: QuerySet) -> None:
        result = dead_letters_replay(ids=queryset.values_list("pk", flat=True),
                                     actor=admin_actor(request.user.get_username()))
        count, skipped = len(result.replayed), len(result.quarantined)
        message = f"Re-running {count} trace{'' if count == 1 else 's'}."
        if skipped:
            message += f" Skipped {skipped} quarantined (failed too often to re-run)."
        self.message_user(request, message, messages.SUCCESS)

