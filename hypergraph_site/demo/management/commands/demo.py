"""The README's main job: the whole product on the bundled sample, from HTTP ingest to stored graphs."""
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.urls import reverse

from explainer.models import Scope, Tenant
from explainer.services import api_key_create, tenant_create
from hypergraph_site.demo import processes
from hypergraph_site.demo.samples import write_sample


DEMO_ADMIN = "admin"


def demo_admin(password_file: Path) -> tuple[str, str]:
    """The demo's superuser and its password: created with a random password the first time, which is kept in
    `var/` (readable by the owner only) so every later demo run can print the same login again."""
    user_model = get_user_model()
    user = user_model.objects.filter(username=DEMO_ADMIN).first()
    stored = password_file.read_text().strip() if password_file.exists() else ""
    if user is not None and stored and user.check_password(stored):
        return DEMO_ADMIN, stored
    password = secrets.token_urlsafe(12)
    if user is None:
        user = user_model.objects.create_superuser(DEMO_ADMIN, email="", password=password)
    else:
        user.set_password(password)
        user.save(update_fields=["password"])
    password_file.parent.mkdir(parents=True, exist_ok=True)
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    return DEMO_ADMIN, password


class Command(BaseCommand):
    help = ("Migrate, start Redis if needed, start the web server and a Celery worker, create a demo tenant, "
            "replay the sample traces over HTTP and print the URLs of the finished graphs and an admin login.")

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
            username, password = demo_admin(var / "demo_admin_password")
            self.stdout.write("\nFinished graphs (open them in a browser with the login below; the API URLs "
                              "need the header X-API-Key: <key>):")
            complete = list(tenant.traces.filter(status="complete").order_by("trace_id"))
            width = max((len(trace.trace_id) for trace in complete), default=0)
            for trace in complete:
                graph_view = reverse("admin:explainer_trace_graph", args=[trace.pk])
                self.stdout.write(f"  {trace.trace_id:<{width}}  {base}{graph_view}")
                self.stdout.write(f"  {'':<{width}}  API {base}/v1/traces/{trace.trace_id}/graph")
            self.stdout.write(f"\nTrace browser: {base}/admin/  login {username} / {password}")
            self.stdout.write(f"Demo API key (shown once): {key}")
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
