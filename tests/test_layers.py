"""The import-layer contract: every import in ``src/greenai`` points down the layers.

Energy side, highest first (see ARCHITECTURE.md): faces (``cli``, ``pytest_energy``,
``integrations``, independent of each other) > ``tracker`` (the composition root) >
``control`` > ``report`` > ``accounting`` > ``tracking`` > ``devices`` > ``sim`` > ``core``.
Compression side: ``compress`` > ``ops`` > ``_C`` (the native module), which may use
``core`` and nothing else of the energy side, as the energy side below the faces uses
none of it. Every import counts: module level, inside functions, under
``TYPE_CHECKING``; ``from greenai import X`` is resolved through the package's lazy map.
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "greenai"

ENERGY = ("core", "sim", "devices", "tracking", "accounting", "report", "control", "tracker")
"""The energy side's layers, lowest first; the faces sit above all of them."""
FACES = ("cli", "pytest_energy", "integrations")
COMPRESSION = ("_C", "ops", "compress")
"""The compression side's layers, lowest first."""
TOP = ("", "__main__")
"""The package itself and ``python -m greenai``: the public face, may import anything."""
ROOT_FILES = {"__init__.py", "__main__.py", "tracker.py", "_C.pyi", "py.typed"}


def layer_of(module: str) -> str | None:
    """The layer of ``greenai.<...>``: its first component after ``greenai``."""
    parts = module.split(".")
    if parts[0] != "greenai":
        return None
    return parts[1] if len(parts) > 1 else ""


def allowed(importer: str, imported: str) -> bool:
    """May a module of layer ``importer`` import one of layer ``imported``?"""
    if importer in FACES and imported in FACES:
        return importer == imported  # the faces are independent of each other
    if importer == imported or importer in TOP or importer in FACES or imported == "core":
        return True
    if importer in ENERGY and imported in ENERGY:
        return ENERGY.index(imported) < ENERGY.index(importer)
    if importer in COMPRESSION and imported in COMPRESSION:
        return COMPRESSION.index(imported) < COMPRESSION.index(importer)
    return False


def _module_name(path: Path, root: Path) -> str:
    parts = ("greenai", *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _lazy_names(root: Path) -> dict[str, str]:
    """``greenai.__init__``'s map of public names to the modules defining them."""
    for node in ast.walk(ast.parse((root / "__init__.py").read_text())):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            assert isinstance(value, dict)
            return value
    raise AssertionError("greenai/__init__.py has no _LAZY map")


def imports(path: Path, root: Path) -> Iterator[tuple[int, str]]:
    """(line, greenai module) for every import in the file at ``path``."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    lazy = _lazy_names(root)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "greenai":
                    yield node.lineno, "greenai.<bare import: unresolvable>"
                elif alias.name.startswith("greenai."):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            if source == "greenai":
                for alias in node.names:
                    if alias.name == "__version__":
                        continue
                    yield node.lineno, lazy.get(alias.name, f"greenai.{alias.name}")
            elif source.startswith("greenai."):
                yield node.lineno, source


def violations(root: Path) -> list[str]:
    """Every import under ``root`` (a copy of ``src/greenai``) that breaks the contract."""
    found = []
    for path in sorted(root.rglob("*.py")):
        importer = layer_of(_module_name(path, root))
        assert importer is not None
        if importer not in (*TOP, *FACES, *ENERGY, *COMPRESSION):
            found.append(f"{path.relative_to(root)}: in no layer ({importer!r})")
            continue
        for line, target in imports(path, root):
            imported = layer_of(target)
            if imported is None or not allowed(importer, imported):
                found.append(f"{path.relative_to(root)}:{line}: {importer} imports {target}")
    return found


def test_every_import_points_down_the_layers() -> None:
    assert violations(SRC) == []


def test_the_package_root_shows_only_the_layers() -> None:
    files = {p.name for p in SRC.iterdir() if p.is_file() and not p.name.endswith(".so")}
    folders = {p.name for p in SRC.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert files <= ROOT_FILES
    assert folders == {*FACES, *ENERGY[:-1], *COMPRESSION[1:]}


def _planted(tmp_path: Path, relative: str, code: str) -> list[str]:
    root = tmp_path / "greenai"
    shutil.copytree(SRC, root, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    with (root / relative).open("a") as f:
        f.write(code)
    return violations(root)


@pytest.mark.parametrize(
    ("relative", "code", "expected"),
    [
        (
            "tracking/result.py",
            "\n\ndef _planted():\n    from greenai.report import html\n",
            "tracking imports greenai.report",
        ),
        ("core/clock.py", "\nimport greenai.tracker\n", "core imports greenai.tracker"),
        (
            "devices/base.py",
            "\nimport typing\nif typing.TYPE_CHECKING:\n    from greenai import Result\n",
            "devices imports greenai.tracking.result",
        ),
        ("ops/reference.py", "\nfrom greenai.tracking import meter\n", "ops imports greenai.track"),
        ("report/html.py", "\nfrom ..compress import pruning\n", "report imports greenai.compress"),
        ("cli/demo.py", "\nfrom greenai.pytest_energy import plugin\n", "cli imports greenai.pyt"),
        ("sim/gpu.py", "\nimport greenai\n", "sim imports greenai.<bare import"),
    ],
)
def test_a_planted_upward_import_breaks_the_contract(
    tmp_path: Path, relative: str, code: str, expected: str
) -> None:
    found = _planted(tmp_path, relative, code)
    assert len(found) == 1
    assert relative in found[0]
    assert expected in found[0]


def test_a_loose_module_is_in_no_layer(tmp_path: Path) -> None:
    root = tmp_path / "greenai"
    shutil.copytree(SRC, root, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    (root / "helpers.py").write_text('"""A module beside the layers."""\n')
    assert violations(root) == ["helpers.py: in no layer ('helpers')"]
