import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hypergraph_site.settings")
application = get_wsgi_application()

from hypergraph_site.tracing import tracing_configure  # noqa: E402 - needs the settings configured above

tracing_configure(role="web")
