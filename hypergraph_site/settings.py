"""Settings, read once from the environment (https://django-environ.readthedocs.io/).

Grouped by integration. Every value has a default that runs on a fresh machine (SQLite under var/,
local file storage, Redis on localhost) so the README's run command needs no configuration. A `.env` file at the
repository root (written by `scripts/setup.sh`) is read first; variables already in the environment win over it.
"""
from __future__ import annotations

import os
from pathlib import Path

import environ

from hypergraph_site import logs, storage

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
ENV_FILE = Path(os.environ.get("HG_ENV_FILE") or BASE_DIR / ".env")


class _Env(environ.Env):
    """django-environ, but a value that does not parse stops the process with one line naming it, not a traceback."""

    def get_value(self, var, *args, **kwargs):
        try:
            return super().get_value(var, *args, **kwargs)
        except (ValueError, TypeError) as exc:
            raise SystemExit(f"hypergraph-sidecar: {var}={os.environ.get(var)!r} is not valid ({exc}); fix it in "
                             f"the environment or in {ENV_FILE}") from None


env = _Env()
if ENV_FILE.is_file():
    env.read_env(str(ENV_FILE))

# --- Core -------------------------------------------------------------------------------------------
DEV_MODE = env.bool("DEV_MODE", default=False)
# A secret is required outside dev mode; the dev default is deliberately loud so it is never mistaken for one.
SECRET_KEY = env.str("SECRET_KEY", default="") or (
    "dev-insecure-secret-key-DO-NOT-USE-IN-PRODUCTION" if DEV_MODE else ""
)
if not SECRET_KEY:
    raise SystemExit("hypergraph-sidecar: SECRET_KEY is not set. Run `bash scripts/setup.sh` (it writes one to .env), "
                     "export SECRET_KEY=..., or set DEV_MODE=1 for a local, insecure default.")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "explainer",
    "ingest",
    "hypergraph_site.demo",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "hypergraph_site.api.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "hypergraph_site.api.errors.StripApiSlashMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "hypergraph_site.urls"
WSGI_APPLICATION = "hypergraph_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------------
# https://django-environ.readthedocs.io/en/latest/types.html#environ-env-db-url
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
# Persistent connections: opening one costs a PostgreSQL backend per request, more than the accept itself. Health
# checks at request start drop a connection broken by a database restart instead of failing the request with it.
# https://docs.djangoproject.com/en/stable/ref/databases/#persistent-connections
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The demo runs a web server and a worker against one SQLite file; wait for locks instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    # A file, not memory, so that a worker process in the end-to-end tests sees the test database too.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
    VAR_DIR.mkdir(exist_ok=True)
elif env.bool("DB_PREPARED_STATEMENTS", default=True):
    # /ingest's accept statements (ingest/pg_accept.py) bind their parameters on the server, so psycopg prepares each
    # on a connection after its fifth run: parsing and planning them cost more than executing them. The ORM's
    # client-side binding is untouched. Off behind a pooler in transaction mode that cannot keep prepared statements
    # (PgBouncer before 1.21). https://www.psycopg.org/psycopg3/docs/advanced/prepare.html
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Storage ----------------------------------------------------------------------------------------
# Where graph documents (STORAGE_BACKEND) and stage artifacts (ARTIFACT_BACKEND) live: `local`, folders of this host
# (every worker and the web process must share them), or `s3`, one bucket all hosts reach (README "Storage").
STORAGE_BACKEND = env.str("STORAGE_BACKEND", default="local")
ARTIFACT_BACKEND = env.str("ARTIFACT_BACKEND", default="local")
for _name, _value in (("STORAGE_BACKEND", STORAGE_BACKEND), ("ARTIFACT_BACKEND", ARTIFACT_BACKEND)):
    if _value not in storage.BACKENDS:
        raise SystemExit(f"hypergraph-sidecar: {_name}={_value!r} is not valid; choose one of {storage.BACKENDS}")
# Intermediate stage artifacts (activations, decoded features) live here between chain stages when local.
ARTIFACT_ROOT = Path(env.str("ARTIFACT_ROOT", default=str(VAR_DIR / "artifacts")))
# Gzipped graph documents when STORAGE_BACKEND=local.
GRAPH_ROOT = Path(env.str("GRAPH_ROOT", default=str(VAR_DIR / "graphs")))
S3_BUCKET = env.str("S3_BUCKET", default="")
S3_PREFIX = env.str("S3_PREFIX", default="hypergraph")
S3_ENDPOINT_URL = env.str("S3_ENDPOINT_URL", default="")
S3_REGION = env.str("S3_REGION", default="")
# With a KMS key every object is written SSE-KMS under it; without one, SSE-S3 (AES256).
S3_KMS_KEY_ID = env.str("S3_KMS_KEY_ID", default="")
if "s3" in (STORAGE_BACKEND, ARTIFACT_BACKEND) and not S3_BUCKET:
    raise SystemExit("hypergraph-sidecar: S3_BUCKET is not set, and STORAGE_BACKEND or ARTIFACT_BACKEND is s3")
# Traces older than this many days are deleted by `manage.py purge` (0: kept forever); a tenant may override it.
RETENTION_DAYS = env.int("RETENTION_DAYS", default=0)

# --- Static files -----------------------------------------------------------------------------------
# The web process serves them itself (https://whitenoise.readthedocs.io/en/stable/django.html): gunicorn serves
# none, and the admin and the graph view need theirs. `scripts/setup.sh` runs collectstatic into STATIC_ROOT.
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
if "s3" in (STORAGE_BACKEND, ARTIFACT_BACKEND):
    _s3 = storage.s3_storage(bucket=S3_BUCKET, region=S3_REGION, endpoint_url=S3_ENDPOINT_URL,
                             kms_key_id=S3_KMS_KEY_ID)
STORAGES["graphs"] = _s3 if STORAGE_BACKEND == "s3" else storage.local_storage(GRAPH_ROOT)
if ARTIFACT_BACKEND == "s3":
    STORAGES["artifacts"] = _s3
# In dev mode files are also found in the apps' static folders, so a checkout is styled before any collectstatic.
WHITENOISE_USE_FINDERS = DEV_MODE or DEBUG

# --- Redis and Celery -------------------------------------------------------------------------------
# https://docs.celeryq.dev/en/stable/userguide/configuration.html
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
# A message a killed worker took is redelivered after this many seconds. Kept short: stages hold leases in the
# database, so a redelivered copy of a stage that is still running finds the lease held and does nothing.
CELERY_VISIBILITY_TIMEOUT_S = env.int("CELERY_VISIBILITY_TIMEOUT_S", default=60)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT_S,
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
}

# --- Reliability ------------------------------------------------------------------------------------
# A stage's lease: renewed while it runs; a stage published but not claimed, or held by a worker that stopped
# renewing, is re-published by the sweeper once this many seconds have passed.
STAGE_LEASE_S = env.int("STAGE_LEASE_S", default=30)
# How often the sweeper inside each worker looks for expired leases (one worker at a time, under a Redis lock).
SWEEP_INTERVAL_S = env.int("SWEEP_INTERVAL_S", default=5)
# A worker that takes the next stage's queue runs that stage itself instead of publishing it (0: publish every stage).
STAGE_INLINE = env.bool("STAGE_INLINE", default=True)
# Workers commit stage transitions without waiting for the WAL flush (a transition lost in a crash is re-run from
# its lease; the completion is always durable). https://www.postgresql.org/docs/current/wal-async-commit.html
WORKER_ASYNC_COMMIT = env.bool("WORKER_ASYNC_COMMIT", default=True)
# A stage started this many times in one run without finishing fails the trace (input that kills its worker).
STAGE_MAX_ATTEMPTS = env.int("STAGE_MAX_ATTEMPTS", default=3)
# Transient errors (Redis, broker, database) are retried in the task for at least this long before dead-lettering.
TASK_RETRY_WINDOW_S = env.int("TASK_RETRY_WINDOW_S", default=120)
# A trace dead-lettered this many times is quarantined: replays skip it.
DEAD_LETTER_MAX_REPLAYS = env.int("DEAD_LETTER_MAX_REPLAYS", default=3)
# A trace not finalized within this many seconds of its last event expires (its capture shards are deleted).
TRACE_OPEN_TTL_S = env.int("TRACE_OPEN_TTL_S", default=3600)
# Seconds a client is asked to wait when a dependency (Redis, the database) is down.
RETRY_AFTER_S = env.int("RETRY_AFTER_S", default=5)

# --- API keys -------------------------------------------------------------------------------------
# A verified key is remembered per process this long; revoking takes effect elsewhere within it.
API_KEY_CACHE_S = env.float("API_KEY_CACHE_S", default=10.0)

# --- Ingest: every size a client sends has a maximum -------------------------------------------------
INGEST_MAX_BODY_BYTES = env.int("INGEST_MAX_BODY_BYTES", default=32 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = INGEST_MAX_BODY_BYTES + 1024 * 1024
# Positions per trace: `token_offset` + rows of any activations event, tokens of a completion, the envelope's tokens.
MAX_TRACE_TOKENS = env.int("MAX_TRACE_TOKENS", default=8192)
# Distinct layers per trace, over all its activations events.
MAX_LAYERS = env.int("MAX_LAYERS", default=8)
# Width (d_model) of one activation row.
MAX_ACTIVATION_WIDTH = env.int("MAX_ACTIVATION_WIDTH", default=16384)
# Characters of a completion's text or prompt.
MAX_TEXT_CHARS = env.int("MAX_TEXT_CHARS", default=256 * 1024)

# --- Backpressure and admission ---------------------------------------------------------------------
# README "Backpressure and admission": levels (soft, hard, drop) from the backlog (queued work ÷ measured throughput,
# seconds) and the traces queued or running; the ladder's actions make degraded traces cheaper, drop sheds them.
BP_MAX_BACKLOG_SENTENCE = env.float("BP_MAX_BACKLOG_SENTENCE", default=1.5)
BP_MAX_BACKLOG_TOKEN = env.float("BP_MAX_BACKLOG_TOKEN", default=3.0)
BP_MAX_QUEUE_TENANT = env.int("BP_MAX_QUEUE_TENANT", default=200)
BP_MAX_QUEUE_GLOBAL = env.int("BP_MAX_QUEUE_GLOBAL", default=5000)
# A tenant running fewer traces than this is never shed while the global queue is under its max.
BP_TENANT_MIN_GUARANTEE = env.int("BP_TENANT_MIN_GUARANTEE", default=2)
# hard = soft × this; a tenant's finalizes are refused (429) past BP_MAX_QUEUE_TENANT × this.
BP_BURST_MULTIPLIER = env.float("BP_BURST_MULTIPLIER", default=1.5)
BP_DEGRADE_LADDER = env.str("BP_DEGRADE_LADDER",
                            default="token->sentence,reduce-samples,reduce-topk,reduce-layers,saliency-fallback,drop")
# A process reuses its reading of the load this long (seconds, at most 1): one database query and two Redis round
# trips per second per process, none per request.
BP_CACHE_S = min(1.0, env.float("BP_CACHE_S", default=1.0))
# Requests per second each tenant may send to /ingest, shared by all web processes (a Redis token bucket); 0: off.
INGEST_RATE_PER_TENANT = env.float("INGEST_RATE_PER_TENANT", default=0.0)
# Requests a tenant may send at once above that rate (the bucket's size); 0: one second's worth.
INGEST_BURST_PER_TENANT = env.int("INGEST_BURST_PER_TENANT", default=0)

# --- SAE dictionaries -------------------------------------------------------------------------------
DICT_ROOT = env.str("DICT_ROOT", default=str(VAR_DIR / "dicts"))
DICT_NAME = env.str("DICT_NAME", default="sample")

# --- Language models --------------------------------------------------------------------------------
# Where `train_lm` writes and the demo loads models (transformers format, `MODEL_ROOT/<name>/`); the committed
# `models/` folder holds `pydoc-gpt2`.
MODEL_ROOT = env.str("MODEL_ROOT", default=str(BASE_DIR / "models"))

# --- Shadow model -----------------------------------------------------------------------------------
# A local transformers folder holding the model the traces come from; when set, workers load it once per process
# and value features through every later layer, then verify the strongest by ablation (VERIFY_* in
# attribution/config.py). Empty: attribution reads the residual through the unembedding (logit) or by cosine.
SHADOW_MODEL = env.str("SHADOW_MODEL", default="")
# Without an in-process shadow model, a trace's concept interactions can be read from an OpenAI-compatible endpoint
# serving its model (exact: prompts as token ids, `echo`, `max_tokens` 0; `attribution.endpoint.EndpointModel`):
# the endpoint's base URL, its model name (default: the trace's), the token id a masked concept becomes, a timeout.
SHADOW_ENDPOINT = env.str("SHADOW_ENDPOINT", default="")
SHADOW_ENDPOINT_MODEL = env.str("SHADOW_ENDPOINT_MODEL", default="")
SHADOW_ENDPOINT_MASK_ID = env.int("SHADOW_ENDPOINT_MASK_ID", default=0)
SHADOW_ENDPOINT_TIMEOUT_S = env.float("SHADOW_ENDPOINT_TIMEOUT_S", default=10.0)
# The serving provider that checks the strongest concept groups of a trace (OpenAI-compatible /v1/completions with
# logprobs; `attribution.endpoint.provider_verify`): its model (default: the trace's), key, timeout and call budget.
# Empty URL: no provider check.
LLM_PROXY_URL = env.str("LLM_PROXY_URL", default="")
LLM_PROXY_MODEL = env.str("LLM_PROXY_MODEL", default="")
LLM_PROXY_API_KEY = env.str("LLM_PROXY_API_KEY", default="")
VERIFY_TIMEOUT_S = env.float("VERIFY_TIMEOUT_S", default=10.0)
COST_MAX_PROVIDER_CALLS = env.int("COST_MAX_PROVIDER_CALLS", default=20)

# --- REST framework and OpenAPI ---------------------------------------------------------------------
# https://www.django-rest-framework.org/api-guide/settings/
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["hypergraph_site.api.auth.TenantApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "hypergraph_site.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    # `?format=` selects a graph export format on /v1/traces/<id>/graph, not a renderer.
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "hypergraph-sidecar API",
    "DESCRIPTION": "Ingest captured activations and read explained traces as HIF hypergraphs.",
    "VERSION": "0.1.0",
    # 3.1: its schema objects are JSON Schema 2020-12, so /ingest's request schema is the validator's own
    # (ingest/openapi.py). https://drf-spectacular.readthedocs.io/en/latest/settings.html
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Names for enums that several fields share, so generated clients get one type for each.
    "ENUM_NAME_OVERRIDES": {"TraceStatusEnum": "explainer.models.TraceStatus.values",
                            "HifNodeTypeEnum": "explainer.apis.HIF_NODE_TYPES"},
    # Swagger UI from the drf-spectacular-sidecar package, served by us: API docs load nothing from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Logs, audit and privacy -----------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# `json`: one JSON object per line with trace_id, tenant, run_id, stage and request_id when known (structlog,
# https://www.structlog.org/en/stable/standard-library.html); `console`: coloured lines for a person at a terminal.
LOG_FORMAT = env.str("LOG_FORMAT", default="json")
if LOG_FORMAT not in ("json", "console"):
    raise SystemExit(f"hypergraph-sidecar: LOG_FORMAT={LOG_FORMAT!r} is not valid; choose json or console")
# Mask emails, phone numbers, cards, SSNs, IP addresses and secrets in prompts, texts and tokens before they are
# stored, and in every log line and audit row (explainer/pii.py).
PII_SCRUB = env.bool("PII_SCRUB", default=True)
# Also mask every run of 6 or more digits (account and order numbers), when PII_SCRUB is on.
PII_MASK_NUMBERS = env.bool("PII_MASK_NUMBERS", default=False)
LOGGING = logs.setup(log_format=LOG_FORMAT, level=LOG_LEVEL, pii_scrub=PII_SCRUB, mask_numbers=PII_MASK_NUMBERS)
# The audit log is rows of the database (AuditEvent); with a path, each row is also appended there as a JSON line.
AUDIT_LOG_PATH = env.str("AUDIT_LOG_PATH", default="")

# --- Metrics and tracing ----------------------------------------------------------------------------
# Prometheus multiprocess mode (https://prometheus.github.io/client_python/multiprocess/): every process of this
# host (gunicorn workers, Celery pool processes) writes its samples to files in this folder and /metrics sums them.
# prometheus_client reads it at import, so it must be in the environment when the process starts; empty: each
# process counts for itself and /metrics serves the web process's own samples plus the database's and Redis's.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if PROMETHEUS_MULTIPROC_DIR:
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
# A worker serves its own samples on this port (0: none), for workers on hosts that share no folder with the web.
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", default=0)
# Label traces and ingest requests by tenant: one series per tenant, so only with a bounded number of tenants.
METRICS_TENANT_LABEL = env.bool("METRICS_TENANT_LABEL", default=False)
# Every worker writes a heartbeat to Redis this often; /readyz reports the worker missing after READYZ_WORKER_MAX_AGE_S.
WORKER_HEARTBEAT_S = env.float("WORKER_HEARTBEAT_S", default=5.0)
READYZ_WORKER_MAX_AGE_S = env.float("READYZ_WORKER_MAX_AGE_S", default=30.0)
# OpenTelemetry spans go over OTLP/HTTP when the endpoint is set (the exporter reads the OTEL_EXPORTER_OTLP_* variables
# itself: https://opentelemetry.io/docs/specs/otel/protocol/exporter/); OTEL_SPANS_FILE appends them to a file as
# JSON lines instead (tests, debugging). Neither set: no tracer provider, every span is a no-op.
OTEL_EXPORTER_OTLP_ENDPOINT = env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default="")
OTEL_SPANS_FILE = env.str("OTEL_SPANS_FILE", default="")
OTEL_SERVICE_NAME = env.str("OTEL_SERVICE_NAME", default="hypergraph-sidecar")
TRACING_ENABLED = bool(OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_SPANS_FILE)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
