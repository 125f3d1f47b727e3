from django.contrib import admin
from django.urls import path
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from explainer.apis import TraceDetailApi, TraceGraphApi
from explainer.health import HealthzApi, MetricsApi, ReadyzApi
from ingest.apis import IngestApi

urlpatterns = [
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
    path("ingest", IngestApi.as_view(), name="ingest"),
    path("v1/traces/<str:trace_id>", TraceDetailApi.as_view(), name="trace-detail"),
    path("v1/traces/<str:trace_id>/graph", TraceGraphApi.as_view(), name="trace-graph"),
    path("healthz", HealthzApi.as_view(), name="healthz"),
    path("readyz", ReadyzApi.as_view(), name="readyz"),
    path("metrics", MetricsApi.as_view(), name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]),
         name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema", authentication_classes=[],
                                                     permission_classes=[]), name="api-docs"),
    path("admin/", admin.site.urls),
]
