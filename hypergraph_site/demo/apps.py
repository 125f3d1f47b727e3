from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo's own corner: sample data, the process runner and the `demo`/`make_sample` commands."""

    name = "hypergraph_site.demo"
    label = "demo"
