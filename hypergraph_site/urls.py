from django.contrib import admin
from django.urls import path
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from explainer.apis import DictionaryListApi, TraceDetailApi, TraceGraphApi, TraceListApi
from hypergraph_site.api.health import HealthzApi, MetricsApi, ReadyzApi
from ingest.apis import IngestApi

from .api.errors import json_not_found, json_server_error

# API routes are written without a trailing slash; `api.errors.StripApiSlashMiddleware` lets `POST /ingest/` reach them.
urlpatterns = [
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
    path("ingest", IngestApi.as_view(), name="ingest"),
    path("v1/traces", TraceListApi.as_view(), name="trace-list"),
    path("v1/traces/<str:trace_id>", TraceDetailApi.as_view(), name="trace-detail"),
    path("v1/traces/<str:trace_id>/graph", TraceGraphApi.as_view(), name="trace-graph"),
    path("v1/dictionaries", DictionaryListApi.as_view(), name="dictionary-list"),
    path("healthz", HealthzApi.as_view(), name="healthz"),
    path("readyz", ReadyzApi.as_view(), name="readyz"),
    path("metrics", MetricsApi.as_view(), name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]),
         name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema", authentication_classes=[],
                                                     permission_classes=[]), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", template_name="api/redoc.html",
                                                    authentication_classes=[], permission_classes=[]),
         name="api-redoc"),
    path("admin/", admin.site.urls),
]

handler404 = json_not_found
handler500 = json_server_error
