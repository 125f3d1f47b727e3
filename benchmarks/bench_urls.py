"""The project's URLs plus the load benchmark's two reference views.

- `bench/bare`: a DRF APIView that reads the body and answers 202: the floor of any request on this stack.
- `bench/insert`: the same, plus one row committed (autocommit: one INSERT, one durable commit) before answering:
  the price of "committed before 202", which /ingest pays too.

The table `bench_row` is created by `load_bench.py` (`BENCH_TABLE_SQL`), not by a migration: these views exist only
for the benchmark.
"""
from django.db import connection
from django.urls import path
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.views import APIView

from hypergraph_site.urls import urlpatterns as project_urlpatterns

class _Raw(BaseParser):
    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return None


class BareApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    parser_classes = [_Raw]

    def post(self, request):
        request.body  # noqa: B018 - read it, as /ingest does
        return Response({"status": "accepted"}, status=202)


class InsertApi(BareApi):
    def post(self, request):
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO bench_row (body) VALUES (%s)", [request.body.decode()])
        return Response({"status": "accepted"}, status=202)


urlpatterns = [
    path("bench/bare", BareApi.as_view()),
    path("bench/insert", InsertApi.as_view()),
    *project_urlpatterns,
]
