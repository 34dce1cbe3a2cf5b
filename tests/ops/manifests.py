"""Loading the operator-facing YAML files the ops tests check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVE_CONFIG = REPO_ROOT / "serve_config.yaml"
PRODUCTION_CONFIG = REPO_ROOT / "deploy" / "serve_config.production.yaml"
KUBERAY = REPO_ROOT / "deploy" / "kuberay"


def load_yaml(path: Path) -> dict[str, Any]:
    """One YAML document."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_documents(path: Path) -> dict[str, dict[str, Any]]:
    """The documents of a multi-document YAML file by ``kind``."""
    docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    by_kind = {doc["kind"]: doc for doc in docs}
    assert len(by_kind) == len(docs), f"{path.name}: two documents of one kind"
    return by_kind
