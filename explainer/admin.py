"""Admin: browse tenants, traces, their events and graphs, and re-run dead letters."""
from django.contrib import admin, messages

from .models import ApiKey, DeadLetter, Explanation, Tenant, Trace, TraceEvent
from .services import dead_letters_replay


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "created")
    search_fields = ("slug", "name")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "tenant", "scopes", "revoked", "created")
    list_filter = ("revoked",)
    readonly_fields = ("prefix", "hashed_key")


class TraceEventInline(admin.TabularInline):
    model = TraceEvent
    fields = ("event_type", "granularity", "event_hash", "received")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Trace)
class TraceAdmin(admin.ModelAdmin):
    list_display = ("trace_id", "tenant", "status", "stage", "granularity", "model_name", "updated")
    list_filter = ("status", "granularity", "tenant")
    search_fields = ("trace_id",)
    readonly_fields = ("tenant", "run_id", "timings", "error", "finalized_at", "finished_at", "created", "updated")
    inlines = [TraceEventInline]


@admin.register(Explanation)
class ExplanationAdmin(admin.ModelAdmin):
    list_display = ("trace", "node_count", "incidence_count", "size_bytes", "updated")


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ("trace", "stage", "reason", "created", "replayed_at", "quarantined")
    list_filter = ("stage", "quarantined")
    actions = ["rerun"]

    @admin.action(description="Re-run the selected dead-lettered traces")
    def rerun(self, request, queryset):
        result = dead_letters_replay(ids=queryset.values_list("pk", flat=True))
        self.message_user(request, f"re-running {len(result.replayed)} traces; skipped {len(result.quarantined)} "
                                   f"quarantined", messages.SUCCESS)
