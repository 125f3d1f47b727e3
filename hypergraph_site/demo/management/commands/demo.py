"""The README's main job: the whole product on the bundled sample, from HTTP ingest to stored graphs."""
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from explainer.models import Scope, Tenant
from explainer.services import api_key_create, tenant_create
from hypergraph_site.demo import processes
from hypergraph_site.demo.samples import write_sample


class Command(BaseCommand):
    help = ("Migrate, start Redis if needed, start the web server and a Celery worker, create a demo tenant, "
            "replay the sample traces over HTTP and print the URLs of the finished graphs.")

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--exit", action="store_true", help="stop the servers once the graphs are printed")

    def handle(self, *args, port: int, exit: bool, **options):
        var = Path(settings.BASE_DIR) / "var"
        call_command("migrate", verbosity=0)
        self.stdout.write(f"database ready ({settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]})")
        self.stdout.write(f"redis {processes.redis_ensure(settings.REDIS_URL)} at {settings.REDIS_URL}")
        _, traces = write_sample(Path(settings.DICT_ROOT), var / "samples" / "sample_traces.jsonl")
        tenant = Tenant.objects.filter(slug="demo").first() or tenant_create(slug="demo", name="Demo")
        _, key = api_key_create(tenant=tenant, scopes=Scope.values, name="demo")
        base = f"http://127.0.0.1:{port}"
        worker = processes.start_worker(var / "log" / "worker.log")
        web = processes.start_web(port, var / "log" / "web.log")
        try:
            processes.wait_http(f"{base}/healthz", process=web)
            self.stdout.write(f"web server at {base}, worker running (logs in {var / 'log'})")
            call_command("replay", str(traces), tenant="demo", url=base, api_key=key, wait=True, timeout=300)
            self.stdout.write("\nFinished graphs (send the header X-API-Key: <key>):")
            for trace in tenant.traces.filter(status="complete").order_by("trace_id"):
                self.stdout.write(f"  {base}/v1/traces/{trace.trace_id}/graph")
            self.stdout.write(f"\nDemo API key (shown once): {key}")
            self.stdout.write(f"Try: curl -H 'X-API-Key: {key}' {base}/v1/traces/sample-biology/graph"
                              "?format=hif-standard")
            if not exit:
                self.stdout.write("Servers keep running; press Ctrl-C to stop.")
                web.wait()
        except KeyboardInterrupt:
            pass
        finally:
            processes.stop(web)
            processes.stop(worker)
