"""The direction of imports: the core imports no app; services import no views, forms, admin, API or
tasks; no module imports itself round a circle (imports inside functions count too). The contracts
live in pyproject.toml ([tool.importlinter]) and also run as ``lint-imports``."""

import os
from pathlib import Path

import grimp
import pytest
from django.conf import settings
from importlinter.cli import lint_imports

ROOT = Path(settings.BASE_DIR)
PACKAGES = ("portal", "ops", "core", "dashboard", "identity", "keys", "attestations", "contacts", "evidence_verifier")


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def test_import_contracts_hold(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0


def cycles(graph) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = [0]

    def visit(module):
        work = [(module, iter(sorted(graph.find_modules_directly_imported_by(module))))]
        index[module] = low[module] = counter[0]
        counter[0] += 1
        stack.append(module)
        on_stack.add(module)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_round_a_circle(graph):
    # A package's __init__ importing its own submodules is how packages work, not a circle.
    assert cycles(graph) == []


def test_the_circle_finder_finds_a_circle():
    graph = grimp.ImportGraph()
    for module in ("a", "b", "c", "d"):
        graph.add_module(module)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="c")
    graph.add_import(importer="c", imported="a")
    graph.add_import(importer="c", imported="d")
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_contracts_cover_every_app():
    text = (ROOT / "pyproject.toml").read_text()
    for package in PACKAGES:
        assert f'"{package}"' in text.split("[tool.importlinter]")[1], package
    assert os.path.exists(ROOT / "core" / "apps.py")
