"""What each layer may import (docs/design.md, Layers), checked on the source files with ``ast``.

Imports anywhere in a file count: at the top, inside functions and under ``TYPE_CHECKING``.
Only a file's own imports are checked, not what the modules it imports import in turn.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "payment_gateway"
SOURCE_ROOT = Path(__file__).resolve().parents[2] / "src" / PACKAGE

WEB = ("fastapi", "starlette")
DATABASE = ("sqlalchemy",)
HTTP_CLIENT = ("httpx",)

# Layer (a folder of the package) -> modules it must not import (a prefix covers submodules).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    # Pure rules: no web, no database, no HTTP client, no other layer of the gateway.
    "domain": (
        *WEB,
        *DATABASE,
        *HTTP_CLIENT,
        f"{PACKAGE}.api",
        f"{PACKAGE}.storage",
        f"{PACKAGE}.bank",
        f"{PACKAGE}.service",
        f"{PACKAGE}.webhooks",
    ),
    # Use cases: they reach storage and the bank only through the interfaces in service/ports.
    "service": (
        *WEB,
        *DATABASE,
        *HTTP_CLIENT,
        f"{PACKAGE}.api",
        f"{PACKAGE}.storage",
        f"{PACKAGE}.bank",
        f"{PACKAGE}.webhooks",
    ),
    # The HTTP edge talks to the use cases, never to the database or the bank.
    "api": (*DATABASE, *HTTP_CLIENT, f"{PACKAGE}.storage", f"{PACKAGE}.bank"),
    # Adapters implement the ports; they know nothing of the web edge or of each other.
    "storage": (*WEB, *HTTP_CLIENT, f"{PACKAGE}.api", f"{PACKAGE}.bank"),
    "bank": (*WEB, *DATABASE, f"{PACKAGE}.api", f"{PACKAGE}.storage"),
    "webhooks": (*WEB, *DATABASE, f"{PACKAGE}.api", f"{PACKAGE}.storage", f"{PACKAGE}.bank"),
}

# Known violations, each a (file relative to the package, forbidden module) pair. An entry is
# removed when its violation is fixed: test_allowed_violations_still_exist says when.
ALLOWED: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True, slots=True)
class Violation:
    file: str
    line: int
    module: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} imports {self.module}"


def imported_modules(source: str, module_name: str) -> list[tuple[int, str]]:
    """Every module the source imports, as (line, dotted name).

    ``module_name`` is the file's own dotted name, to resolve relative imports. For
    ``from a import b`` both ``a`` and ``a.b`` are reported, since ``b`` may be a module.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, module_name)
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def _resolve_from(node: ast.ImportFrom, module_name: str) -> str:
    if node.level == 0:
        return node.module or ""
    # `from . import x` in package a.b.c (module a.b.c.d) is relative to a.b.c.
    package_parts = module_name.split(".")[: -node.level]
    return ".".join([*package_parts, *([node.module] if node.module else [])])


def _is_within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(f"{prefix}.")


def violations(layer: str, forbidden: tuple[str, ...], root: Path = SOURCE_ROOT) -> list[Violation]:
    found: set[Violation] = set()  # `from a import b` may hit through both a and a.b
    for path in (root / layer).rglob("*.py"):
        relative = path.relative_to(root).as_posix()
        module_name = ".".join([PACKAGE, *relative.removesuffix(".py").split("/")])
        for line, module in imported_modules(path.read_text(), module_name):
            prefix = next((p for p in forbidden if _is_within(module, p)), None)
            if prefix is not None:
                found.add(Violation(relative, line, prefix))
    return sorted(found, key=lambda v: (v.file, v.line, v.module))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_it_must_not(layer: str) -> None:
    files = list((SOURCE_ROOT / layer).rglob("*.py"))
    assert len(files) > 1, f"no source files found for layer {layer!r} under {SOURCE_ROOT}"
    unexpected = [
        str(v) for v in violations(layer, FORBIDDEN[layer]) if (v.file, v.module) not in ALLOWED
    ]
    assert unexpected == [], f"the {layer} layer imports what it must not:\n" + "\n".join(
        unexpected
    )


def test_allowed_violations_still_exist() -> None:
    """An allow-list entry whose violation is gone must go too, so it cannot hide a new one."""
    present = {
        (v.file, v.module) for layer, banned in FORBIDDEN.items() for v in violations(layer, banned)
    }
    stale = sorted(ALLOWED - present)
    assert stale == [], f"fixed, so remove from ALLOWED in {Path(__file__).name}: {stale}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import sqlalchemy", "sqlalchemy"),
        ("import sqlalchemy.ext.asyncio as sa", "sqlalchemy.ext.asyncio"),
        ("from fastapi import Request", "fastapi"),
        ("from payment_gateway import storage", "payment_gateway.storage"),
        ("from ..storage.tables import payments", "payment_gateway.storage.tables"),
        ("from .. import bank", "payment_gateway.bank"),
        ("def f():\n    import httpx\n", "httpx"),
        ("if TYPE_CHECKING:\n    import starlette.requests\n", "starlette.requests"),
    ],
)
def test_every_form_of_import_is_seen(source: str, expected: str) -> None:
    modules = [module for _line, module in imported_modules(source, "payment_gateway.domain.x")]
    assert expected in modules


def test_a_forbidden_import_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "domain" / "rules").mkdir(parents=True)
    (tmp_path / "domain" / "clean.py").write_text("import json\n")
    (tmp_path / "domain" / "rules" / "dirty.py").write_text(
        "import json\n\nfrom ...storage.tables import payments\n"
    )
    found = violations("domain", FORBIDDEN["domain"], root=tmp_path)
    assert found == [Violation("domain/rules/dirty.py", 3, f"{PACKAGE}.storage")]


def test_a_prefix_does_not_match_a_longer_name() -> None:
    assert _is_within("sqlalchemy.orm", "sqlalchemy")
    assert not _is_within("sqlalchemy_utils", "sqlalchemy")
    assert not _is_within("payment_gateway.banking", "payment_gateway.bank")
