"""The KubeRay manifests have the structure KubeRay expects and embed a valid Serve config.

The CRDs themselves are not installed here, so the checks are structural (the fields KubeRay's
ray.io/v1 RayService and RayJob require) plus Ray's own Serve schema on the embedded config and
the project's own parsers on what the manifests pass to the code.
"""

from __future__ import annotations

import shlex
from typing import Any

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from serve_app.config import AppArgs
from tests.ops.manifests import KUBERAY, PRODUCTION_CONFIG, SERVE_CONFIG, load_documents, load_yaml
from train_jobs.cli import _config_values, parser
from train_jobs.config import FinetuneConfig


def _service() -> dict[str, Any]:
    return load_documents(KUBERAY / "rayservice.yaml")["RayService"]


def _job() -> dict[str, Any]:
    return load_documents(KUBERAY / "rayjob-training.yaml")["RayJob"]


def _cluster_specs() -> dict[str, dict[str, Any]]:
    return {"RayService": _service()["spec"]["rayClusterConfig"], "RayJob": _job()["spec"]["rayClusterSpec"]}


def _pods(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    return [cluster["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]


def _limits(group: dict[str, Any]) -> dict[str, Any]:
    return group["template"]["spec"]["containers"][0]["resources"]["limits"]


def test_manifests_are_ray_io_v1() -> None:
    assert _service()["apiVersion"] == _job()["apiVersion"] == "ray.io/v1"
    assert _service()["metadata"]["name"] and _job()["metadata"]["name"]


def test_embedded_serve_config_is_valid_and_equals_the_production_config() -> None:
    embedded = yaml.safe_load(_service()["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(embedded)
    assert embedded["applications"] == load_yaml(PRODUCTION_CONFIG)["applications"]
    AppArgs.model_validate(embedded["applications"][0]["args"])
    local = load_yaml(SERVE_CONFIG)["applications"]
    assert [(a["name"], a["import_path"]) for a in embedded["applications"]] == [
        (a["name"], a["import_path"]) for a in local
    ]


@pytest.mark.parametrize("kind", ["RayService", "RayJob"])
def test_head_is_cpu_only_and_gpu_workers_autoscale(kind: str) -> None:
    cluster = _cluster_specs()[kind]
    assert cluster["rayVersion"]
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    for group in [head, *cluster["workerGroupSpecs"]]:
        # KubeRay passes rayStartParams to `ray start` as strings; other types are rejected.
        assert all(isinstance(value, str) for value in group["rayStartParams"].values())
    head_container = head["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head_container["resources"].get("limits", {})
    gpu_groups = [g for g in cluster["workerGroupSpecs"] if "nvidia.com/gpu" in _limits(g)]
    assert gpu_groups, "no worker group requests nvidia.com/gpu"
    for group in cluster["workerGroupSpecs"]:
        assert group["groupName"]
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    if kind == "RayService":
        assert cluster["enableInTreeAutoscaling"] is True
        assert any(g["maxReplicas"] > g["minReplicas"] for g in gpu_groups)


def test_storage_claim_is_shared_and_mounted_at_the_storage_root_in_every_pod() -> None:
    claim = load_documents(KUBERAY / "rayservice.yaml")["PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for kind, cluster in _cluster_specs().items():
        for pod in _pods(cluster):
            volumes = {v["name"]: v for v in pod["volumes"]}
            container = pod["containers"][0]
            env = {e["name"]: e["value"] for e in container["env"]}
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volume = volumes[mounts[env["AVS_STORAGE_ROOT"]]]
            assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"], kind


def test_rayjob_entrypoint_is_a_valid_finetune_command() -> None:
    spec = _job()["spec"]
    words = shlex.split(spec["entrypoint"])
    assert words[:4] == ["python", "-m", "train_jobs", "finetune"]
    config = FinetuneConfig.model_validate(_config_values(parser().parse_args(words[3:])))
    assert config.use_gpu
    workers = sum(g["replicas"] for g in spec["rayClusterSpec"]["workerGroupSpecs"])
    assert config.num_workers <= workers  # one GPU pod per Ray Train worker
    assert spec["shutdownAfterJobFinishes"] is True
