"""The request boundary in-process (no Ray): hosts, origins, keys, body limits, the JSON reader, exposure, OpenAPI.

The same behaviour is checked over real HTTP through Serve in ``test_hostile_input.py`` and
``test_openapi_fuzz.py``; these pin each rule down in a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from serve_app import context, ingress
from serve_app.boundary import allowed_hosts, check_exposure, host_name, redact_paths
from tests.serve_app.test_ingress import API_KEY, AUTH, SPEECH, FakeTTS
from voice_core.errors import ConfigError
from voice_core.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(storage_root=tmp_path / "storage", demo_tiny_model=True, api_keys=API_KEY)


def install(settings: Settings, hosts: frozenset[str] | None = None) -> None:
    context.set_context(context.IngressContext(tts=FakeTTS(), settings=settings, allowed_hosts=hosts))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    saved = context._context
    install(settings, allowed_hosts(settings, "127.0.0.1"))
    with TestClient(ingress.api, base_url="http://127.0.0.1:8000") as http:
        yield http
    context._context = saved


def error(response, status: int) -> str:
    assert response.status_code == status, response.text
    return response.json()["error"]["message"]


def test_host_allow_list_defaults_to_loopback_names_when_bound_to_loopback(settings: Settings) -> None:
    assert allowed_hosts(settings, "127.0.0.1") >= {"localhost", "127.0.0.1", "::1"}
    assert allowed_hosts(settings, "0.0.0.0") is None
    named = settings.model_copy(update={"allowed_hosts": ["Voice.Example.org"]})
    assert allowed_hosts(named, "0.0.0.0") == {"voice.example.org"}
    assert [host_name(h) for h in ("[::1]:8000", "LocalHost:80", "evil.example")] == [
        "[::1]",
        "localhost",
        "evil.example",
    ]


def test_a_foreign_host_header_is_refused(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/health", headers={"Host": "localhost:8000"}).status_code == 200
    assert client.get("/health", headers={"Host": "[::1]:8000"}).status_code == 200
    message = error(client.get("/health", headers={"Host": "rebind.evil.example"}), 400)
    assert "AVS_ALLOWED_HOSTS" in message


def test_cross_origin_state_changes_are_refused_unless_configured(client: TestClient, settings: Settings) -> None:
    evil = {"Origin": "http://evil.example", **AUTH}
    assert "AVS_CORS_ORIGINS" in error(client.post("/v1/audio/speech", json=SPEECH, headers=evil), 403)
    assert "AVS_CORS_ORIGINS" in error(client.delete("/voices/voice-1", headers=evil), 403)
    assert client.get("/profiles", headers=evil).status_code == 200  # reads are not refused (no CORS headers either)
    assert "access-control-allow-origin" not in client.get("/profiles", headers=evil).headers
    own = {"Origin": "http://127.0.0.1:8000", **AUTH}
    assert client.post("/v1/audio/speech", json=SPEECH, headers=own).status_code == 200

    install(settings.model_copy(update={"cors_origins": ["http://app.example"]}), None)
    app = {"Origin": "http://app.example", **AUTH}
    answer = client.post("/v1/audio/speech", json=SPEECH, headers=app)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "http://app.example"
    preflight = client.options(
        "/v1/audio/speech",
        headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["access-control-allow-methods"]


def test_only_health_and_the_page_are_public(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    for path in ("/health/engines", "/healthz", "/health-anything", "/languages"):
        assert "API key" in error(client.get(path), 401), path


@pytest.mark.parametrize("path", ["/v1/audio/speech", "/tts", "/jobs", "/training/jobs", "/datasets"])
def test_json_routes_take_json_only(client: TestClient, path: str) -> None:
    body = b'{"input": "Hi", "voice": "alloy"}'
    message = error(client.post(path, content=body, headers={"Content-Type": "text/plain", **AUTH}), 415)
    assert "application/json" in message
    message = error(client.post(path, content=body, headers=AUTH), 415)
    assert "application/json" in message


@pytest.mark.parametrize("path", ["/v1/audio/speech", "/tts", "/jobs", "/training/jobs", "/datasets"])
def test_deep_json_is_a_400_on_every_route(client: TestClient, path: str) -> None:
    deep = b'{"a": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    message = error(client.post(path, content=deep, headers={"Content-Type": "application/json", **AUTH}), 400)
    assert "deeper than 32" in message


def test_bodies_are_counted_as_they_arrive_chunked_included(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"input": "'
        for _ in range(40):
            yield b"a" * 10_000
        yield b'", "voice": "alloy"}'

    headers = {"Content-Type": "application/json", **AUTH}
    message = error(client.post("/v1/audio/speech", content=chunks(), headers=headers), 413)
    assert "262144" in message
    message = error(client.post("/training/jobs", content=b"{}", headers={**headers, "Content-Length": "9" * 12}), 413)
    assert "bytes" in message


def test_405_names_every_method_of_the_path(client: TestClient) -> None:
    answer = client.put("/jobs", headers=AUTH)
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, POST"
    assert client.patch("/voices/voice-1", headers=AUTH).headers["allow"] == "DELETE, GET"


def test_model_ids_are_checked_before_they_reach_a_header(client: TestClient) -> None:
    for model in ("a\r\nx-injected: 1", "mod\u00e8le", "../etc"):
        body = {**SPEECH, "model": model, "allow_fallback": True}
        assert "'model'" in error(client.post("/v1/audio/speech", json=body, headers=AUTH), 400)


def test_server_paths_leave_error_messages(settings: Settings) -> None:
    root = settings.storage_root
    message = f"no training run 'x' in {root}/runs; run {Path.cwd()}/train"
    assert redact_paths(message, settings) == "no training run 'x' in storage/runs; run <service>/train"


def test_no_keys_on_a_public_address_refuses_to_start(settings: Settings, tmp_path: Path) -> None:
    open_settings = Settings.load(storage_root=tmp_path / "s")
    check_exposure(open_settings, "127.0.0.1")
    check_exposure(settings, "0.0.0.0")  # keys set
    with pytest.raises(ConfigError, match="AVS_ALLOW_UNAUTHENTICATED"):
        check_exposure(open_settings, "0.0.0.0")
    check_exposure(open_settings.model_copy(update={"allow_unauthenticated": True}), "0.0.0.0")

    from serve_app.app import build_app

    with pytest.raises(ConfigError, match="AVS_API_KEYS"):
        build_app({"settings": {"storage_root": str(tmp_path / "s"), "host": "0.0.0.0"}})


def test_openapi_describes_every_body_error_and_id() -> None:
    ingress.api.openapi_schema = None
    schema = ingress.api.openapi()
    operations = [(path, method, op) for path, item in schema["paths"].items() for method, op in item.items()]
    posts = {(path, method) for path, method, _ in operations if method == "post"}
    described = {(path, method) for path, method, op in operations if "requestBody" in op}
    assert posts <= described, posts - described
    tts_body = schema["paths"]["/tts"]["post"]["requestBody"]["content"]
    assert set(tts_body) == {"application/json", "multipart/form-data"}
    assert tts_body["multipart/form-data"]["schema"]["properties"]["reference"]["format"] == "binary"
    for path, method, op in operations:
        assert "422" not in op["responses"], (path, method)
        assert {"400", "413"} <= set(op["responses"]), (path, method)
        for param in op.get("parameters", []):
            if param["in"] == "path":
                assert param["schema"]["pattern"] and param["schema"]["maxLength"] == 128, (path, param)
    assert "audio/mpeg" in schema["paths"]["/v1/audio/speech"]["post"]["responses"]["200"]["content"]
