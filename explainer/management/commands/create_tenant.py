from django.core.management.base import BaseCommand, CommandError

from explainer.audit import CLI
from explainer.models import Scope, Tenant
from explainer.services import api_key_create, tenant_create


class Command(BaseCommand):
    help = "Create a tenant (or reuse an existing one) and print a new API key once; the key is stored hashed."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default="")
        parser.add_argument("--scopes", default=f"{Scope.TRACES_WRITE},{Scope.TRACES_READ}",
                            help=f"comma-separated, from {Scope.values} (default: write and read; "
                                 f"{Scope.TRACES_DELETE} only when asked for)")

    def handle(self, *args, slug: str, name: str, scopes: str, **options):
        wanted = [s.strip() for s in scopes.split(",") if s.strip()]
        tenant = Tenant.objects.filter(slug=slug).first() or tenant_create(slug=slug, name=name)
        try:
            _, key = api_key_create(tenant=tenant, scopes=wanted, actor=CLI)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(f"tenant '{tenant.slug}', scopes {wanted}; this key is shown once:")
        self.stdout.write(key)
