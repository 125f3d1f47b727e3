"""The README's main job: the whole product, from a model's generation with capture hooks (or the bundled sample,
without the `model` extra) over HTTP ingest to stored graphs."""
import json
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.urls import reverse

from explainer.models import ApiKey, Scope, Tenant, TraceStatus
from explainer.services import api_key_create, tenant_create, traces_delete
from hypergraph_site.demo import processes
from hypergraph_site.demo.lm import LM_IDS, lm_available, lm_service_env, lm_traces_ask
from hypergraph_site.demo.samples import SAMPLE_TRACES, write_sample
from ingest.replay import wait_and_report

DEMO_ADMIN = "admin"
DEMO_TENANT = "demo"
DEMO_KEY_NAME = "demo"
SAMPLE_IDS = tuple(trace_id for trace_id, *_ in SAMPLE_TRACES)
# A demo trace in one of these states will not be explained by sending its events again (they are acknowledged,
# nothing more), so the demo deletes it and sends them anew.
DEAD_ENDS = (TraceStatus.FAILED, TraceStatus.CANCELED, TraceStatus.EXPIRED, TraceStatus.SHED)


def _keep_secret(path: Path, secret: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(secret + "\n")
    path.chmod(0o600)


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
    _keep_secret(password_file, password)
    return DEMO_ADMIN, password


def demo_api_key(tenant: Tenant, key_file: Path) -> tuple[str, str]:
    """The demo tenant's API key and what became of it: "reused" (the one kept in `key_file` still works), "created"
    (none was kept) or "replaced" (the kept one was revoked, expired or unknown to this database).

    Keys are stored hashed, so the plaintext is kept in `var/` (readable by the owner only), like the admin
    password, for every run to print. Every other unrevoked `demo` key of the tenant is revoked: however often the
    demo runs, one key of it works.
    """
    stored = key_file.read_text().strip() if key_file.exists() else ""
    current = None
    if stored:
        try:
            current = ApiKey.objects.get_from_key(stored)  # unknown, revoked and expired keys are not found
        except ApiKey.DoesNotExist:
            pass
    if current is not None and current.tenant_id == tenant.pk and set(Scope.values) <= set(current.scopes):
        key, outcome = stored, "reused"
    else:
        current, key = api_key_create(tenant=tenant, scopes=Scope.values, name=DEMO_KEY_NAME)
        _keep_secret(key_file, key)
        outcome = "replaced" if stored else "created"
    tenant.api_keys.filter(name=DEMO_KEY_NAME, revoked=False).exclude(pk=current.pk).update(revoked=True)
    return key, outcome


def demo_traces_sort(tenant: Tenant, trace_ids: tuple[str, ...], *, fresh: bool) -> tuple[list[str], list[str]]:
    """Of the demo's `trace_ids`, those the tenant has explained already, and those to send: all of them with
    `fresh` (their traces deleted first), else the rest. A demo trace that failed, was canceled or expired is deleted
    too, since re-sending its events would only be acknowledged."""
    traces = tenant.traces.filter(trace_id__in=trace_ids)
    doomed = traces if fresh else traces.filter(status__in=DEAD_ENDS)
    traces_delete(trace_pks=doomed.values_list("pk", flat=True))
    complete = set(traces.filter(status=TraceStatus.COMPLETE).values_list("trace_id", flat=True))
    return [t for t in trace_ids if t in complete], [t for t in trace_ids if t not in complete]


class Command(BaseCommand):
    help = ("Migrate, start Redis if needed, start the web server and a Celery worker, create a demo tenant, "
            "generate answers with the committed language model and capture hooks on (or replay the bundled sample "
            "traces without the `model` extra), send them over HTTP and print the URLs of the finished graphs and "
            "an admin login. Ctrl-C or SIGTERM stops every process it started.")

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--model-port", type=int, default=8100, help="the model server's port")
        parser.add_argument("--exit", action="store_true", help="stop the servers once the graphs are printed")
        parser.add_argument("--fresh", action="store_true",
                            help="explain the demo traces again: delete the demo's traces, send them anew")
        parser.add_argument("--sample", action="store_true",
                            help="replay the bundled sample traces even when the language model can run")
        parser.add_argument("--var", type=Path, default=Path(settings.VAR_DIR),
                            help="where the demo keeps its samples, logs, admin password and API key (default var/)")

    def handle(self, *args, port: int, model_port: int, exit: bool, fresh: bool, sample: bool, var: Path,
               **options):
        with processes.supervised(self.stdout.write) as children:
            call_command("migrate", verbosity=0)
            self.stdout.write(f"database ready ({settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]})")
            redis_server = processes.redis_ensure(settings.REDIS_URL, var / "log" / "redis.log")
            if redis_server is not None:
                children.add(f"redis-server ({settings.REDIS_URL})", redis_server)
            self.stdout.write(f"redis {'started' if redis_server else 'running'} at {settings.REDIS_URL}")
            lm, why = (None, "--sample") if sample else lm_available(Path(settings.MODEL_ROOT))
            if lm is not None:
                self.stdout.write(f"language model {lm.folder}, dictionary {lm.dict_root / 'pydoc-gpt2'} "
                                  f"(layers {', '.join(map(str, lm.layers))})")
                trace_ids, child_env = LM_IDS, lm_service_env(lm)
            else:
                self.stdout.write(f"the bundled sample traces (not the language model: {why})")
                _, traces = write_sample(Path(settings.DICT_ROOT), var / "samples" / "sample_traces.jsonl")
                trace_ids, child_env = SAMPLE_IDS, None
            tenant = Tenant.objects.filter(slug=DEMO_TENANT).first() or tenant_create(slug=DEMO_TENANT, name="Demo")
            key, key_outcome = demo_api_key(tenant, var / "demo_api_key")
            explained, pending = demo_traces_sort(tenant, trace_ids, fresh=fresh)
            base = f"http://127.0.0.1:{port}"
            child_env = {**(child_env or {}), **processes.metrics_env(var / "prometheus")}
            children.add("the Celery worker", processes.start_worker(var / "log" / "worker.log", env=child_env))
            web = children.add(f"the web server (gunicorn, port {port})",
                               processes.start_web(port, var / "log" / "web.log", env=child_env))
            processes.wait_http(f"{base}/healthz", process=web)
            self.stdout.write(f"web server at {base}, worker running (logs in {var / 'log'})")
            if explained:
                self.stdout.write(f"{', '.join(explained)}: already explained (run with --fresh to explain them "
                                  "again)")
            elif fresh:
                self.stdout.write("explaining the demo traces again (--fresh: their old traces are deleted)")
            if lm is not None:
                model_url = f"http://127.0.0.1:{model_port}"
                server = children.add(f"the model server (serve_model, port {model_port})",
                                      processes.start_model_server(model_port, var / "log" / "model_server.log",
                                                                   sidecar_url=base, api_key=key, layers=lm.layers))
                processes.wait_http(f"{model_url}/healthz", timeout_s=120, process=server)
                self.stdout.write(f"model server at {model_url}/v1 (OpenAI-compatible; every answer is captured "
                                  "and explained)")
            if pending and lm is not None:
                self.stdout.write(f"asking the model server {len(pending)} questions:")
                lm_traces_ask(model_url, pending, echo=self.stdout.write)
                wait_and_report(DEMO_TENANT, pending, timeout_s=300)
            elif pending:
                to_send = var / "samples" / "to_explain.jsonl"
                to_send.write_text("".join(line + "\n" for line in traces.read_text().splitlines()
                                           if json.loads(line)["trace_id"] in pending))
                call_command("replay", str(to_send), tenant=DEMO_TENANT, url=base, api_key=key, wait=True,
                             timeout=300)
            self._print_graphs(tenant, trace_ids, base, key, key_outcome, var)
            if not exit:
                self.stdout.write("Servers keep running; press Ctrl-C (or send SIGTERM) to stop them.")
                web.wait()
                self.stdout.write(f"the web server exited by itself (code {web.returncode})")

    def _print_graphs(self, tenant: Tenant, trace_ids: tuple[str, ...], base: str, key: str, key_outcome: str,
                      var: Path) -> None:
        username, password = demo_admin(var / "demo_admin_password")
        self.stdout.write("\nFinished graphs (open them in a browser with the login below; the API URLs "
                          "need the header X-API-Key: <key>):")
        complete = list(tenant.traces.filter(status="complete", trace_id__in=trace_ids).order_by("trace_id"))
        width = max((len(trace.trace_id) for trace in complete), default=0)
        for trace in complete:
            graph_view = reverse("admin:explainer_trace_graph", args=[trace.pk])
            self.stdout.write(f"  {trace.trace_id:<{width}}  {base}{graph_view}")
            self.stdout.write(f"  {'':<{width}}  API {base}/v1/traces/{trace.trace_id}/graph")
        self.stdout.write(f"\nTrace browser: {base}/admin/  login {username} / {password}")
        self.stdout.write(f"Demo API key ({key_outcome}, kept in {var / 'demo_api_key'}): {key}")
        self.stdout.write(f"Try: curl -H 'X-API-Key: {key}' {base}/v1/traces/{trace_ids[0]}/graph"
                          "?format=hif-standard")
