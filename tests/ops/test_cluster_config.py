"""cluster.yaml passes the Ray cluster launcher's own validation and keeps the operations contract.

``ray up`` runs ``prepare_config`` (merge with the provider's ``defaults.yaml``, merge the setup
commands, fill per-node-type worker bounds) and ``validate_config`` (jsonschema against Ray's
``ray-schema.json`` plus its cross-field checks) before anything provider-specific; both work offline.
What ``ray up`` does after that, ``bootstrap_config`` (IAM roles, security groups, key pairs, AMI
lookups), needs AWS credentials and network access, so it is not run here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_YAML = REPO_ROOT / "cluster.yaml"


def _raw() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def prepared() -> dict[str, Any]:
    config = prepare_config(_raw())
    validate_config(config)
    return config


def test_cluster_yaml_passes_rays_validation(prepared: dict[str, Any]) -> None:
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_validation_has_teeth() -> None:
    broken = prepare_config(_raw())
    broken["available_node_types"]["gpu_worker"]["resources"]["GPU"] = 0.5  # schema: integers only
    with pytest.raises(jsonschema.ValidationError):
        validate_config(broken)
    broken = prepare_config(_raw())
    broken["head_node_type"] = "no-such-type"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(broken)


def test_head_runs_no_tasks_and_serves_the_dashboard(prepared: dict[str, Any]) -> None:
    head = prepared["available_node_types"][prepared["head_node_type"]]
    assert head["resources"]["CPU"] == 0
    assert head["max_workers"] == 0
    start = " ".join(prepared["head_start_ray_commands"])
    assert "--head" in start
    assert "--dashboard-host=0.0.0.0" in start
    assert "--dashboard-port=8265" in start
    assert "--metrics-export-port=" in start


def test_an_autoscaling_gpu_worker_type_exists(prepared: dict[str, Any]) -> None:
    gpu_types = {
        name: node
        for name, node in prepared["available_node_types"].items()
        if name != prepared["head_node_type"] and node["resources"].get("GPU", 0) > 0
    }
    assert gpu_types, "no worker type offers GPUs"
    for node in gpu_types.values():
        assert node["max_workers"] > node["min_workers"] >= 0
        assert node["resources"].get("CPU", 0) >= 1  # a TTS replica also reserves CPU
    assert sum(node["max_workers"] for node in gpu_types.values()) <= prepared["max_workers"]


def test_setup_installs_the_project_as_the_readme_does(prepared: dict[str, Any]) -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert "./run.sh install" in readme
    # A `git archive` export of the project is synced to ~/avs and installed there, on every node.
    source = prepared["file_mounts"]["~/avs"]
    assert f"git archive HEAD | tar -x -C {source}" in CLUSTER_YAML.read_text(encoding="utf-8")
    for key in ("head_setup_commands", "worker_setup_commands"):
        assert "cd ~/avs && ./run.sh install" in prepared[key], key
    run_sh = (REPO_ROOT / "run.sh").read_text(encoding="utf-8")
    assert re.search(r"^\s+install\)", run_sh, re.MULTILINE), "run.sh has no install command"


def test_shared_storage_is_mounted_at_the_storage_root_on_every_node(prepared: dict[str, Any]) -> None:
    commands = "\n".join(prepared["worker_setup_commands"])
    assert prepared["head_setup_commands"][: len(prepared["setup_commands"])] == prepared["setup_commands"]
    mounts = [re.search(r"mount -t nfs4 .* (\S+:/) (/\S+?)\)", c) for c in prepared["setup_commands"]]
    mount_point = next(m.group(2) for m in mounts if m)
    assert f"export AVS_STORAGE_ROOT={mount_point}" in commands
    # Every Ray process inherits it: both start commands source the environment file first.
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert any("source ~/.avs_env; ray start" in c for c in prepared[key]), key
