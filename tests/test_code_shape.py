"""The code keeps the shape docs/architecture.md describes.

- no module over 400 lines unless its docstring has a ``Size:`` line saying why;
- no function or method over 80 lines;
- every serve_app capability is a sub-package with ``protocol``, ``routes`` and ``service``;
- a capability's modules never import the ingress, and routes never import another capability's routes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.test_import_graph import PACKAGES, REPO, import_graph

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
CAPABILITIES = ("speech", "voices", "jobs", "datasets", "training")


def product_modules() -> list[Path]:
    """Every Python file of the project's packages."""
    return sorted(path for package in PACKAGES for path in (REPO / package).rglob("*.py"))


def long_modules(paths: list[Path]) -> list[str]:
    """Modules over the limit whose docstring gives no ``Size:`` reason."""
    found = []
    for path in paths:
        source = path.read_text(encoding="utf-8")
        lines = len(source.splitlines())
        docstring = ast.get_docstring(ast.parse(source)) or ""
        if lines > MAX_MODULE_LINES and "Size:" not in docstring:
            found.append(f"{path.relative_to(REPO)} ({lines} lines)")
    return found


def long_functions(paths: list[Path]) -> list[str]:
    """Functions and methods longer than the limit, decorators and docstring included."""
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = node.end_lineno - start + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_module_is_over_400_lines_without_a_reason() -> None:
    assert long_modules(product_modules()) == []


def test_no_function_is_over_80_lines() -> None:
    assert long_functions(product_modules()) == []


def test_the_checks_find_long_code(tmp_path: Path) -> None:
    """The two size checks fail on code that breaks them (so a pass above means something)."""
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    long_function = tmp_path / "long_function.py"
    long_function.write_text(f'"""Doc."""\n\n\ndef f():\n{body}\n', encoding="utf-8")
    filler = "\n".join(f"X{i} = {i}" for i in range(MAX_MODULE_LINES))
    long_module = tmp_path / "long_module.py"
    long_module.write_text(f'"""Doc."""\n\n{filler}\n', encoding="utf-8")
    explained = tmp_path / "explained.py"
    explained.write_text(f'"""Doc.\n\nSize: one table that reads best whole.\n"""\n\n{filler}\n', encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("tests.test_code_shape.REPO", tmp_path)
        assert long_functions([long_function]) == ["long_function.py:4 f (81 lines)"]
        assert long_modules([long_module, explained]) == [f"long_module.py ({MAX_MODULE_LINES + 2} lines)"]


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_each_capability_has_protocol_routes_and_service(capability: str) -> None:
    package = REPO / "serve_app" / capability
    missing = [part for part in ("__init__", "protocol", "routes", "service") if not (package / f"{part}.py").is_file()]
    assert missing == [], f"serve_app/{capability} lacks {missing}"


def test_capabilities_import_neither_the_ingress_nor_each_others_routes() -> None:
    graph = import_graph()
    wrong = []
    for module, targets in graph.items():
        parts = module.split(".")
        if parts[0] != "serve_app" or len(parts) < 3 or parts[1] not in CAPABILITIES:
            continue
        for target in targets:
            if target == "serve_app.ingress":
                wrong.append(f"{module} imports the ingress")
            elif target.endswith(".routes") and target != f"serve_app.{parts[1]}.routes":
                wrong.append(f"{module} imports {target}")
    assert wrong == []
