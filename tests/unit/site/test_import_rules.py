"""The import rules of the architecture, checked by parsing every module (ast): imports flow one way.

- Libraries (`sae`, `attribution`, `hif`, and the capture SDK `ingest.hooks` + `ingest.client`) import no Django,
  DRF or Celery and no application package.
- `explainer` never imports `ingest`'s server side (the SDK is a library, so it may use it).
- `ingest` and `explainer` reach the project package only through `hypergraph_site.api` (cross-cutting API pieces).
- No import cycle among the modules of one package.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("sae", "attribution", "hif", "ingest", "explainer", "hypergraph_site")
FRAMEWORKS = ("django", "rest_framework", "rest_framework_api_key", "drf_spectacular", "celery", "kombu",
              "django_prometheus", "environ")
SDK = ("ingest.hooks", "ingest.client")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of everything a module imports, at any depth of the file (lazy imports count too)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


MODULES = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "migrations" not in p.parts}


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def is_library(module: str) -> bool:
    return under(module, ("sae", "attribution", "hif", *SDK))


def violation(module: str, name: str) -> str | None:
    """Why `module` may not import `name`, or None when it may."""
    top = name.split(".")[0]
    if is_library(module):
        if top in FRAMEWORKS or (top in ("ingest", "explainer", "hypergraph_site") and not under(name, SDK)):
            return f"library {module} imports {name}"
    elif under(module, ("explainer",)) and top == "ingest" and not under(name, SDK):
        return f"{module} imports ingest's server side: {name}"
    elif under(module, ("explainer", "ingest")) and top == "hypergraph_site" and \
            not under(name, ("hypergraph_site.api",)):
        return f"{module} imports the project package outside hypergraph_site.api: {name}"
    return None


def violations() -> list[str]:
    found = (violation(module, name) for module, path in sorted(MODULES.items()) for name in sorted(imports_of(path)))
    return [v for v in found if v]


def cycles(package: str) -> list[list[str]]:
    graph = {m: {n for n in imports_of(p) if n in MODULES and n != m and n.split(".")[0] == package}
             for m, p in MODULES.items() if m.split(".")[0] == package}
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return [c for c in found if not (c[0].endswith("__init__") or any(m == package for m in c))]


def test_imports_flow_one_way():
    assert violations() == []


@pytest.mark.parametrize("package", ["sae", "attribution", "hif", "ingest", "explainer", "hypergraph_site"])
def test_no_import_cycle_inside_a_package(package):
    assert cycles(package) == []


@pytest.mark.parametrize("module, name", [
    ("hif.prune", "django.conf"), ("sae.service", "explainer.models"), ("ingest.hooks.stores", "ingest.services"),
    ("explainer.pipeline", "ingest.validation"), ("explainer.apis", "hypergraph_site.demo.samples"),
])
def test_the_rules_refuse(module, name):
    """The rules are not vacuous: each kind of wrong import is reported."""
    assert violation(module, name)


@pytest.mark.parametrize("module, name", [
    ("explainer.pipeline", "ingest.hooks"), ("ingest.services", "explainer.services"),
    ("explainer.apis", "hypergraph_site.api.auth"), ("hif.prune", "numpy"),
])
def test_the_rules_allow(module, name):
    assert violation(module, name) is None
