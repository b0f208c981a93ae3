"""The dependency rules of STYLE.md, checked by walking every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ltx_reconcile"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(rel.parts)


def _edges() -> list[tuple[str, str]]:
    return [
        (_module_name(path), imported)
        for path in sorted(PACKAGE.rglob("*.py"))
        for imported in _imports(path)
    ]


def _is_under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_only_the_cli_imports_click_and_rich():
    """click and rich are presentation; the library must be usable without them."""
    offenders = [
        (src, dst)
        for src, dst in _edges()
        if (_is_under(dst, "click") or _is_under(dst, "rich"))
        and not _is_under(src, "ltx_reconcile.cli")
    ]
    assert offenders == []


def test_nothing_imports_the_cli():
    """The CLI is the top layer: no library module may depend on it."""
    offenders = [
        (src, dst)
        for src, dst in _edges()
        if _is_under(dst, "ltx_reconcile.cli")
        and not _is_under(src, "ltx_reconcile.cli")
        and src != "ltx_reconcile.__main__"
    ]
    assert offenders == []


def test_emulator_and_client_never_import_each_other():
    """They are two independent readings of the API contract; sharing code hides misreadings."""
    offenders = [
        (src, dst)
        for src, dst in _edges()
        if (_is_under(src, "ltx_reconcile.emulator") and _is_under(dst, "ltx_reconcile.api"))
        or (_is_under(src, "ltx_reconcile.api") and _is_under(dst, "ltx_reconcile.emulator"))
    ]
    assert offenders == []


def test_emulator_depends_on_nothing_of_the_reconciler():
    """The emulator stands alone: it imports only itself (it could ship as its own package)."""
    offenders = [
        (src, dst)
        for src, dst in _edges()
        if _is_under(src, "ltx_reconcile.emulator")
        and _is_under(dst, "ltx_reconcile")
        and not _is_under(dst, "ltx_reconcile.emulator")
    ]
    assert offenders == []


def test_core_modules_do_not_touch_the_network_or_the_clock_libraries():
    """keys, spec and plan are pure: no HTTP client and no server in them."""
    pure = ("ltx_reconcile.keys", "ltx_reconcile.spec", "ltx_reconcile.plan")
    offenders = [
        (src, dst)
        for src, dst in _edges()
        if any(_is_under(src, p) for p in pure)
        and any(_is_under(dst, lib) for lib in ("httpx", "starlette", "uvicorn"))
    ]
    assert offenders == []
