"""The house: the package's import graph has no cycle, no module reaches into another's
private names, and the front ends are leaves (Flax and Equinox are imported only by the
modules that need them)."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).parents[1] / "jax_tconv"


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks (never run)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                skip.update(id(n) for n in ast.walk(inner))
    return skip


def imports(name: str) -> tuple[set[str], list[str]]:
    """(the package modules `name` imports, at any depth of its code, and every use of
    another module's underscore name, as 'module.name')."""
    tree = ast.parse(MODULES[name].read_text())
    skip = _type_checking_nodes(tree)
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    edges, private, aliases = set(), [], {}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in MODULES:
                    edges.add(a.name)
                    aliases[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            if base.split(".")[0] != "jax_tconv":
                continue
            for a in node.names:
                if f"{base}.{a.name}" in MODULES:           # a submodule
                    edges.add(f"{base}.{a.name}")
                    aliases[a.asname or a.name] = f"{base}.{a.name}"
                else:
                    edges.add(base)
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        private.append(f"{base}.{a.name}")
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id in aliases and node.attr.startswith("_")
              and not node.attr.startswith("__")):
            private.append(f"{aliases[node.value.id]}.{node.attr}")
    edges.discard(name)
    return edges, private


GRAPH = {name: imports(name) for name in MODULES}


def cycles() -> list[list[str]]:
    """Every cycle of the import graph, each once (by depth-first search)."""
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(GRAPH[node][0]):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                if sorted(cycle[:-1]) not in [sorted(c[:-1]) for c in found]:
                    found.append(cycle)
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)
    return found


def test_the_walk_sees_the_imports():
    """The check can fail: it sees known edges, and a cycle and a private use planted in it."""
    assert "jax_tconv._strategy" in GRAPH["jax_tconv._api"][0]
    assert "jax_tconv._strategy" in GRAPH["jax_tconv._tune"][0]
    assert "jax_tconv.nn._adjoint_flax" not in GRAPH["jax_tconv.nn.equinox"][0]
    saved = GRAPH["jax_tconv._strategy"]
    GRAPH["jax_tconv._strategy"] = (saved[0] | {"jax_tconv._api"}, saved[1])
    try:
        assert any("jax_tconv._api" in c for c in cycles())
    finally:
        GRAPH["jax_tconv._strategy"] = saved
    assert len(MODULES) > 30


def test_the_import_graph_has_no_cycle():
    assert cycles() == []


def test_no_module_uses_another_modules_private_names():
    private = {name: uses for name, (_, uses) in GRAPH.items() if uses}
    assert private == {}


def test_the_private_name_check_can_fail(tmp_path, monkeypatch):
    fake = tmp_path / "fake.py"
    fake.write_text("from jax_tconv._api import _hidden\nfrom jax_tconv import _spec\n"
                    "_spec._secret\n")
    monkeypatch.setitem(MODULES, "jax_tconv.fake", fake)
    _, uses = imports("jax_tconv.fake")
    assert uses == ["jax_tconv._api._hidden", "jax_tconv._spec._secret"]


def _imported_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(sorted(m for m in "
                          "sys.modules if m.split('.')[0] in ('flax', 'equinox', 'optax', "
                          "'torch')))"], capture_output=True, text=True, check=True)
    return set(eval(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("code,allowed", [
    ("import jax_tconv", set()),
    ("import jax_tconv.nn", set()),
    ("import jax_tconv.nn.equinox", {"equinox"}),
    ("import jax_tconv.nn.linen", {"flax"}),
    ("import jax_tconv.nn.nnx", {"flax", "optax"}),   # flax.nnx imports optax itself
    ("import jax_tconv, jax.numpy as jnp; jax_tconv.conv_transpose(jnp.ones((1, 3, 1)), "
     "jnp.ones((3, 1, 1)), method='tune')", set()),
])
def test_front_ends_are_leaves(code, allowed, tmp_path, monkeypatch):
    monkeypatch.setenv("JAX_TCONV_TUNE_CACHE", str(tmp_path / "tune.json"))
    frameworks = {m.split(".")[0] for m in _imported_after(code)}
    assert frameworks <= allowed, (code, frameworks)
