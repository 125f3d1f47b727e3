"""State of the explainer: tenants, keys, traces and everything that happens to a trace.

The database is the source of truth. Status transitions are conditional UPDATEs (see `services.py`), so a stage that
lost a race, or belongs to a superseded run, changes nothing. The trace row also drives its own chain: it names the
stage to run next and holds the lease of whoever runs it, so a lost message or a killed worker is seen (an expired
lease) and healed by the sweeper without any broker state.
"""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from rest_framework_api_key.models import AbstractAPIKey


class Tenant(models.Model):
    """A customer. Deleting one deletes its traces and everything stored for them (`services.tenant_delete`)."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200, blank=True)
    retention_days = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Days this tenant's traces are kept before `manage.py purge` deletes them; 0 keeps them forever; "
                  "empty uses RETENTION_DAYS.")
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.slug


class Scope(models.TextChoices):
    TRACES_WRITE = "traces:write"
    TRACES_READ = "traces:read"
    TRACES_DELETE = "traces:delete"


class ApiKey(AbstractAPIKey):
    """A hashed (SHA-512), revocable key that belongs to one tenant and carries scopes."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    scopes = models.JSONField(default=list)

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class TraceStatus(models.TextChoices):
    OPEN = "open"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"
    # Dropped by backpressure before any work (`error` says why); `manage.py replay --shed` runs it again.
    SHED = "shed"


TERMINAL_STATUSES = (TraceStatus.COMPLETE, TraceStatus.FAILED, TraceStatus.CANCELED, TraceStatus.EXPIRED,
                     TraceStatus.SHED)
ACTIVE_STATUSES = (TraceStatus.QUEUED, TraceStatus.RUNNING)


class Granularity(models.TextChoices):
    SENTENCE = "sentence"
    TOKEN = "token"


class Stage(models.TextChoices):
    LOAD = "load"
    SAE_DECODE = "sae_decode"
    ATTRIBUTE = "attribute"
    BUILD = "build"
    PERSIST = "persist"

    @property
    def next(self) -> "Stage | None":
        """The stage after this one in the chain; None after persist."""
        order = list(Stage)
        position = order.index(self)
        return order[position + 1] if position + 1 < len(order) else None


class Trace(models.Model):
    """One model response being explained.

    A trace is `open` from its first event until it is finalized (`finalized_at`, then `queued` for the chain), or
    `expired` when it is not finalized within `TRACE_OPEN_TTL_S`. `run_id` names the current chain run: a replay starts a new run, and tasks of the old run
    then find nothing to claim.

    While a run is active, `stage` is the stage to run (or running) and `lease_until` the moment by which it must be
    claimed (`lease_owner` empty) or renewed by its holder (`lease_owner` set); past it the sweeper re-publishes the
    stage. `attempts` counts the starts of the current stage, so input that kills whatever runs it ends failed.
    `token_count`, `layers` and `rows_extent` summarise the events received, so accept-time checks need no reads.
    """

    # No index of its own: (tenant, trace_id) and (tenant, created, id) already lead with it.
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="traces", db_index=False)
    trace_id = models.CharField(max_length=128)
    status = models.CharField(max_length=16, choices=TraceStatus.choices, default=TraceStatus.OPEN)
    stage = models.CharField(max_length=16, choices=Stage.choices, blank=True)
    granularity = models.CharField(max_length=16, choices=Granularity.choices, default=Granularity.SENTENCE)
    model_name = models.CharField(max_length=200, blank=True)
    model_hash = models.CharField(max_length=128, blank=True)
    run_id = models.UUIDField(null=True, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=32, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    token_count = models.PositiveIntegerField(null=True, blank=True)
    layers = models.JSONField(default=list, blank=True)
    rows_extent = models.PositiveIntegerField(default=0)
    # What the attribute stage valued (`value`: model, logit or cosine, and why not the model) and, with a shadow
    # model, the verification by ablation: counts, Spearman of predicted against observed, top-8/random-8 drops.
    verification = models.JSONField(default=dict, blank=True)
    # The prompt's concepts and how they interact on the first emitted token (`pipeline.concepts_of`): {} until
    # a run through the shadow model records them, or {"skipped": why}.
    concepts = models.JSONField(default=dict, blank=True)
    # Backpressure (`explainer.backpressure`): the level seen when the trace was finalized, raised to the level seen
    # at its first stage start, and the ladder actions that level applies to its work (null until decided). Kept on
    # the row so a re-run after a crash does the same work.
    backpressure_level = models.CharField(max_length=8, blank=True)
    degraded = models.JSONField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "trace_id"], name="trace_unique_per_tenant")]
        indexes = [
            # Open traces, for expiry: the accept path's frequent UPDATEs touch no indexed column (not even
            # `updated`), so PostgreSQL can make them heap-only (HOT) instead of writing every index again.
            models.Index(fields=["id"], condition=models.Q(status="open"), name="trace_open"),
            models.Index(fields=["status", "lease_until"]),
            # The admin's trace list: newest first, for everyone or within one tenant, filtered by these columns.
            models.Index(fields=["created", "id"], name="trace_newest"),
            models.Index(fields=["tenant", "created", "id"], name="trace_tenant_newest"),
            models.Index(fields=["status", "created"], name="trace_status_newest"),
            models.Index(fields=["granularity", "created"], name="trace_granularity_newest"),
            models.Index(fields=["model_name", "created"], name="trace_model_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.trace_id}"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            stored = Trace.objects.filter(pk=self.pk).values_list("tenant_id", flat=True).first()
            if stored is not None and stored != self.tenant_id:
                raise ValidationError("A trace's tenant can never change.")
        super().save(*args, **kwargs)


class TraceEvent(models.Model):
    """An accepted event exactly as received; stored before the request is acknowledged."""

    # No index of its own: the (trace, event_hash) constraint leads with it.
    trace = models.ForeignKey(Trace, on_delete=models.CASCADE, related_name="events", db_index=False)
    event_type = models.CharField(max_length=16)
    event_hash = models.CharField(max_length=64)
    granularity = models.CharField(max_length=16, blank=True)
    payload = models.JSONField()
    received = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["trace", "event_hash"], name="event_unique_per_trace")]
        ordering = ["id"]


class Explanation(models.Model):
    """What PostgreSQL keeps of a complete trace's HIF document; one per trace, upserted.

    The document lives in the object store under `object_key` (`graph_documents`), gzipped, and `content_sha256`
    (of its canonical JSON) is checked whenever it is read; `meta` and the counts serve lists and pages without it.
    Rows written before documents moved out have no key and hold the document itself in `document` (JSONB).
    """

    trace = models.OneToOneField(Trace, on_delete=models.CASCADE, related_name="explanation")
    document = models.JSONField(null=True, blank=True)
    object_key = models.CharField(max_length=512, blank=True)
    content_sha256 = models.CharField(max_length=64, blank=True)
    meta = models.JSONField(default=dict, blank=True)
    size_bytes = models.PositiveIntegerField()
    node_count = models.PositiveIntegerField()
    incidence_count = models.PositiveIntegerField()
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)


class DeadLetter(models.Model):
    """A trace run that failed for good: what failed, where, and whether somebody re-ran it.

    A trace that keeps failing is `quarantined` once it has this many letters (`DEAD_LETTER_MAX_REPLAYS`): replays
    skip it, so a poison input cannot be re-run into the workers by a blanket replay.
    """

    trace = models.ForeignKey(Trace, on_delete=models.CASCADE, related_name="dead_letters")
    run_id = models.UUIDField(null=True, blank=True)
    stage = models.CharField(max_length=16, blank=True)
    reason = models.TextField()
    created = models.DateTimeField(auto_now_add=True)
    replayed_at = models.DateTimeField(null=True, blank=True)
    quarantined = models.BooleanField(default=False)

    class Meta:
        ordering = ["id"]


class StaffTenant(models.Model):
    """Confines a staff user to one tenant in the admin.

    A linked staff user sees only that tenant's traces, events, explanations and dead letters; a superuser needs no
    link and sees every tenant; a staff user with no link sees none. One tenant per user keeps the rule checkable.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_tenant")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="staff")

    class Meta:
        verbose_name = "tenant of a staff user"

    def __str__(self) -> str:
        return f"{self.user} → {self.tenant}"


class AuditEvent(models.Model):
    """One row of the append-only audit log: who (`actor`) did what (`action`) to what (`target`), for which tenant.

    Rows are hash-chained: `hash` is the SHA-256 of `prev_hash` and the canonical JSON of the row's other fields, and
    `prev_hash` is the hash of the row before (`seq` - 1), so editing or deleting a row breaks the chain where it
    happened (`manage.py audit_verify`). `tenant` is a slug, not a key: the record outlives the tenant. The model
    refuses updates and deletes; raw SQL is what `audit_verify` is there to catch.
    """

    seq = models.BigIntegerField(unique=True)
    at = models.DateTimeField()
    actor = models.CharField(max_length=200)
    tenant = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=300, blank=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["seq"]
        indexes = [models.Index(fields=["tenant", "seq"], name="audit_tenant_seq"),
                   models.Index(fields=["action", "seq"], name="audit_action_seq")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.target}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ValidationError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("Audit events are append-only.")
