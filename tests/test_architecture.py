"""The package's structure, checked from its source: no import circles, and each module imports
only from its own layer or the layers below (docs/architecture.md lists them).

Function-level imports count: an import inside a function is a dependency too."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "fflearn"

# the layers, bottom up; a module may import from its own layer and those below
LAYERS: list[set[str]] = [
    {"errors", "registry", "config", "cliargs"},
    {"analog", "batchnorm", "runtime", "goodness", "losses", "negatives", "labels", "schemes", "schedule", "feedback", "regularizers",
     "plugins", "data", "methods"},
    {"models", "predict", "learner", "build"},
    {"runfolder", "checkpoint", "console", "callbacks", "tensorboard", "trainer", "runs"},
    {"parallel"},
    {"experiments", "bench", "ablate", "ablate_df", "export"},
    {"cli", "api", "__main__", "__init__"},
]


def modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports (from the source, at any depth of the file)."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(p.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            edges[m] |= {t for t in targets if t in mods and t != m and not m.startswith(t + ".")}
    return edges


def layer_of(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top == "__main__":
        top = "__main__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"module {module} is in no layer: add it to LAYERS (and docs/architecture.md)")


def test_no_import_circles() -> None:
    mods = modules()
    edges = imports(mods)

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in edges[node]:
                if nxt == start:
                    return path + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        return None

    circles = [c for m in sorted(mods) if not mods[m].name == "__init__.py" and (c := cycle_from(m))]
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_modules_import_only_their_layer_or_below() -> None:
    mods = modules()
    bad = []
    for m, targets in imports(mods).items():
        if m == "fflearn":  # the package's __init__ re-exports the public face
            continue
        for t in targets:
            if t != "fflearn" and layer_of(t) > layer_of(m):
                bad.append(f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_circle(tmp_path: Path, monkeypatch) -> None:
    """The circle test must be able to fail: a two-module package that imports in a circle."""
    pkg = tmp_path / "fflearn"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", pkg)
    import pytest

    with pytest.raises(AssertionError, match="fflearn.a -> fflearn.b -> fflearn.a"):
        test_no_import_circles()
