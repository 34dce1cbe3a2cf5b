"""docs/architecture.md matches the code: every module, class, function and method it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.test_import_graph import PACKAGES, REPO

DOC = REPO / "docs" / "architecture.md"
NAME = re.compile(r"`((?:" + "|".join(PACKAGES) + r")(?:\.[A-Za-z_][A-Za-z0-9_]*)*)`")


def module_file(parts: list[str]) -> Path | None:
    """The file of the dotted module ``parts`` (a package's ``__init__.py``), None when there is none."""
    base = REPO.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def defined(tree: ast.AST, name: str) -> ast.AST | None:
    """The class, function or assignment called ``name`` directly in ``tree``'s body."""
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return node
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return node
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == name:
            return node
    return None


def resolves(dotted: str) -> bool:
    """Whether ``dotted`` names a module, or a name defined in one (``module.Class.method`` too)."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        path = module_file(parts[:split])
        if path is None:
            continue
        node: ast.AST | None = ast.parse(path.read_text(encoding="utf-8"))
        for attribute in parts[split:]:
            node = defined(node, attribute) if node is not None else None
        return node is not None
    return False


def named_in(text: str) -> list[str]:
    """The project names written in backticks in ``text``."""
    return sorted(set(NAME.findall(text)))


def test_every_name_in_the_architecture_doc_exists() -> None:
    names = named_in(DOC.read_text(encoding="utf-8"))
    assert len(names) > 30, "the doc names the modules and functions of both flows"
    assert [name for name in names if not resolves(name)] == []


def test_the_check_catches_a_name_that_is_gone() -> None:
    assert resolves("serve_app.speech.service.TTSDeployment.synthesize")
    assert resolves("voice_core.storage")
    assert not resolves("serve_app.tts")
    assert not resolves("serve_app.speech.service.TTSDeployment.no_such_method")
    assert named_in("see `serve_app.runs.ManagedRun` and `os.path`") == ["serve_app.runs.ManagedRun"]
