"""Fine-tuned exports and LoRA adapters selected per request (Serve multiplexing), and fallback."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from voice_core.adapters import lora_config, save_adapter
from voice_core.export import export_checkpoint
from voice_core.xtts_model import load_xtts

pytestmark = pytest.mark.slow

BASE = "tiny-xtts"
GREEDY = {"text": "Testing the model selection.", "do_sample": False, "seed": 11, "format": "pcm", "voice": "alloy"}


def _finetuned_checkpoint(tiny_model_dir: Path, path: Path, scale: float) -> Path:
    """A coqui-trainer-style checkpoint whose GPT weights moved away from the base."""
    state = torch.load(tiny_model_dir / "model.pth", weights_only=True)["model"]
    generator = torch.Generator().manual_seed(int(scale * 1000))
    moved = {
        f"xtts.{k}": (v + scale * torch.randn(v.shape, generator=generator) if k.startswith("gpt.gpt.") else v)
        if v.is_floating_point()
        else v
        for k, v in state.items()
    }
    torch.save({"model": moved, "optimizer": {"state": {}}, "step": 3}, path)
    return path


@pytest.fixture(scope="module")
def models(service, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Write two fine-tuned exports, one LoRA adapter and one broken model into the service's storage."""
    work = tmp_path_factory.mktemp("checkpoints")
    root = service.storage / "models"
    for model_id, scale in (("ft-one", 0.05), ("ft-two", 0.08)):
        checkpoint = _finetuned_checkpoint(tiny_model_dir, work / f"{model_id}.pth", scale)
        export_checkpoint(checkpoint, tiny_model_dir, root / model_id, base_model_id=BASE)
    model, _ = load_xtts(tiny_model_dir)
    torch.manual_seed(3)
    from peft import get_peft_model

    save_adapter(get_peft_model(model.gpt.gpt, lora_config(init_weights=False)), root / "lora-one", base_model=BASE)
    broken = root / "broken-ft"
    broken.mkdir()
    for name in ("config.json", "vocab.json", "speakers_xtts.pth"):
        shutil.copyfile(tiny_model_dir / name, broken / name)
    (broken / "model.pth").symlink_to("/nonexistent/trainer-cache/model_last.pth")
    return {"ft": "ft-one", "ft2": "ft-two", "lora": "lora-one", "broken": "broken-ft"}


def _tts(service, **body) -> httpx.Response:
    return httpx.post(f"{service.url}/tts", json={**GREEDY, **body}, headers=service.headers, timeout=120)


def _audio(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.frombuffer(response.content, dtype="<i2")


def test_models_route_lists_exports_adapters_and_broken_ones(service, models) -> None:
    listed = {m["id"]: m for m in httpx.get(f"{service.url}/models", headers=service.headers).json()["models"]}
    assert listed[BASE]["default"] is True and listed[BASE]["loaded"] is True
    assert listed["ft-one"]["kind"] == "model" and listed["ft-one"]["status"] == "ok"
    assert listed["lora-one"]["kind"] == "lora_adapter" and listed["lora-one"]["status"] == "ok"
    assert listed["broken-ft"]["status"] == "broken"
    assert "/nonexistent/trainer-cache/model_last.pth" in listed["broken-ft"]["reason"]


def test_finetuned_and_lora_models_are_selected_per_request(service, models) -> None:
    base = _audio(_tts(service))
    outputs = {}
    for model_id in (models["ft"], models["lora"]):
        response = _tts(service, model=model_id)
        assert response.headers["x-model-used"] == model_id
        assert response.headers["x-model-requested"] == model_id
        outputs[model_id] = _audio(response)
        assert outputs[model_id].shape != base.shape or not np.array_equal(outputs[model_id], base)
    # Selecting the same model again gives the same greedy audio (loaded once, reused).
    assert np.array_equal(_audio(_tts(service, model=models["ft"])), outputs[models["ft"]])
    engines = httpx.get(f"{service.url}/health/engines", headers=service.headers).json()["TTSDeployment"]
    assert {models["ft"], models["lora"]} <= set(engines["loaded_models"])
    # The OpenAI route takes the same ids in `model`.
    speech = httpx.post(
        f"{service.url}/v1/audio/speech",
        json={"model": models["lora"], "input": "Hello.", "voice": "alloy", "response_format": "wav"},
        headers=service.headers,
        timeout=120,
    )
    assert speech.status_code == 200 and speech.headers["x-model-used"] == models["lora"]


def test_models_per_replica_are_bounded_with_lru_eviction(service, models) -> None:
    for model_id in (models["ft"], models["lora"], models["ft2"]):
        assert _tts(service, model=model_id, text="Hi.").status_code == 200
    loaded = httpx.get(f"{service.url}/health/engines", headers=service.headers).json()["TTSDeployment"][
        "loaded_models"
    ]
    # The default model is pinned; two multiplexed models at most (max_models_per_replica=2), oldest evicted.
    assert loaded[0] == BASE
    assert set(loaded[1:]) == {models["lora"], models["ft2"]}


def test_unloadable_model_fails_clearly_or_falls_back_when_allowed(service, models) -> None:
    failed = _tts(service, model=models["broken"])
    assert failed.status_code >= 400
    error = failed.json()["error"]
    assert error["type"] == "dangling_symlink"
    assert "model_last.pth" in error["message"] and "does not exist" in error["message"]

    fallback = _tts(service, model=models["broken"], allow_fallback=True)
    assert fallback.status_code == 200
    assert fallback.headers["x-model-requested"] == models["broken"]
    assert fallback.headers["x-model-used"] == BASE
    assert "model_last.pth" in fallback.headers["x-fallback-reason"]
    assert np.array_equal(_audio(fallback), _audio(_tts(service)))


def test_unknown_model_is_a_404_naming_it(service, models) -> None:
    response = _tts(service, model="no-such-model")
    assert response.status_code == 404
    assert "no-such-model" in response.json()["error"]["message"]
