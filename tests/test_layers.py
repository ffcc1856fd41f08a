"""The package's layers form a DAG: each module imports only from its own layer or the layers below it.

Every import counts, function-local ones included (most were there to break a
circle). ``LAYERS`` is the order docs/architecture.md describes; the second
test shows the check fails when a lower layer imports a higher one.
"""

from __future__ import annotations

import ast
import os
import shutil

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "metaextract_dask")

#: bottom first; a name is a subpackage or a module directly under the package; "" is the package's __init__
LAYERS = ["core", "storage", "sandbox", "readers", "diagnostics", "catalog", "planning", "execution",
          "scanning", "demo", "", "cli"]


def _modules(package: str) -> dict[str, str]:
    """{dotted name below the package ("" for its __init__): file}."""
    out = {}
    for folder, _dirs, files in os.walk(package):
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, name), package)[:-3].replace(os.sep, ".")
                out["" if rel == "__init__" else rel.removesuffix(".__init__")] = os.path.join(folder, name)
    return out


def _imports(module: str, path: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, dotted name below the package) of every import of the package in a module, wherever it stands."""
    here = module.split(".") if module else []
    base = here if is_package else here[:-1]
    out = []
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[: len(base) - node.level + 1]
                target = ".".join([*parent, *([node.module] if node.module else [])])
            elif node.module and (node.module + ".").startswith("metaextract_dask."):
                target = node.module.removeprefix("metaextract_dask").lstrip(".")
            else:
                continue
            out.extend((node.lineno, f"{target}.{alias.name}".strip(".")) for alias in node.names)
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, a.name.removeprefix("metaextract_dask").lstrip(".")) for a in node.names
                       if (a.name + ".").startswith("metaextract_dask."))
    return out


def _layer(name: str) -> int:
    top = name.split(".")[0] if name else ""
    return LAYERS.index(top)


def violations(package: str = PACKAGE) -> list[str]:
    """Every import from a module to a layer above its own, as ``file:line: a -> b``."""
    modules = _modules(package)
    found = []
    for module, path in sorted(modules.items()):
        for line, target in _imports(module, path, path.endswith("__init__.py")):
            while target and target not in modules:  # a name imported from a module: the module
                target = target.rsplit(".", 1)[0] if "." in target else ""
            if _layer(target) > _layer(module):
                found.append(f"{os.path.relpath(path, package)}:{line}: {module or '__init__'} -> {target or '__init__'}")
    return found


@pytest.mark.unit
def test_every_module_is_in_a_layer():
    unknown = {m.split(".")[0] for m in _modules(PACKAGE) if (m.split(".")[0] if m else "") not in LAYERS}
    assert not unknown, f"modules outside every layer (add them to LAYERS and docs/architecture.md): {sorted(unknown)}"


@pytest.mark.unit
def test_no_layer_imports_a_layer_above_it():
    assert violations() == []


@pytest.mark.unit
def test_the_check_fails_when_a_lower_layer_imports_a_higher_one(tmp_path):
    copy = tmp_path / "metaextract_dask"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "readers" / "base.py", "a") as f:
        f.write("\n\ndef _planned():\n    from ..planning.plan import plan_file\n\n    return plan_file\n")
    found = violations(str(copy))
    assert len(found) == 1 and "readers.base -> planning.plan" in found[0], found


@pytest.mark.integration
def test_a_test_without_a_layer_marker_is_refused(tmp_path):
    import subprocess
    import sys

    shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "conftest.py"), tmp_path / "conftest.py")
    # two planted tests with nothing to check: what is asserted is how conftest treats them (the exit status, the line)
    (tmp_path / "test_unmarked.py").write_text("def test_nothing():\n    assert True\n")
    (tmp_path / "test_marked.py").write_text("import pytest\n\npytestmark = pytest.mark.unit\n\n\ndef test_nothing():\n    assert True\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_marked.py", "test_unmarked.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "test_unmarked.py::test_nothing: no layer marker" in done.stdout + done.stderr


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """How many parameters a function takes (``self``/``cls`` not counted; ``*args`` and ``**kwargs`` count one each)."""
    a = node.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    return len(names) + (a.vararg is not None) + (a.kwarg is not None)


def long_signatures(package: str) -> dict[str, int]:
    """{module:function: parameters} of every function of the package."""
    out = {}
    for module, path in _modules(package).items():
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out[f"{module}:{node.name}"] = _parameters(node)
    return out


@pytest.mark.unit
def test_options_come_in_groups_scan_takes_at_most_10_and_no_function_more_than_8():
    """Options travel as typed groups (core/options.py), not as long lists of keywords passed along."""
    counts = long_signatures(PACKAGE)
    assert counts["scanning:scan"] <= 10
    assert {name: n for name, n in counts.items() if n > 8 and name != "scanning:scan"} == {}


@pytest.mark.unit
def test_scan_keywords_go_to_the_group_that_owns_them():
    from metaextract_dask.core.options import Running, ScanOptions

    opts = ScanOptions.from_values({"workers": 3, "checksum": "sha256", "include": ["*.nc"], "force": True, "progress": False,
                                    "strategy": None}, {"running": Running(isolate=False)})
    assert (opts.running.workers, opts.running.isolate, opts.reading.checksum) == (3, False, "sha256")
    assert (opts.selection.include, opts.catalog.force, opts.feedback.progress) == (["*.nc"], True, False)
    assert opts.reading.strategy.value == "adaptive"  # None: the default
    with pytest.raises(TypeError, match="unexpected keyword argument 'wokers'"):
        ScanOptions.from_values({"wokers": 3})
