"""The one settings class of the project.

Read once at an entry point (``Settings.load()``) and passed explicitly to Ray actors and tasks.
Every field is documented here and only here; ``python -m voice_core settings-table`` renders the
README table from these descriptions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from voice_core.errors import ConfigError

ENV_PREFIX = "AVS_"

XTTS_RELEASE_FILES: tuple[str, ...] = (
    "config.json",
    "model.pth",
    "vocab.json",
    "speakers_xtts.pth",
    "dvae.pth",
    "mel_stats.pth",
)


# OpenAI voice names mapped to built-in XTTS-v2 speakers (all present in the release's speakers_xtts.pth).
OPENAI_VOICES: dict[str, str] = {
    "alloy": "Claribel Dervla",
    "ash": "Andrew Chipper",
    "ballad": "Badr Odhiambo",
    "coral": "Daisy Studious",
    "echo": "Dionisio Schuyler",
    "fable": "Gracie Wise",
    "onyx": "Damien Black",
    "nova": "Ana Florence",
    "sage": "Tammie Ema",
    "shimmer": "Alison Dietlinde",
    "verse": "Viktor Eka",
}


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Configuration of the service, the data-prep pipeline and the training jobs.

    Values come from ``AVS_*`` environment variables, then a ``.env`` file, then the defaults.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        validate_default=True,
        frozen=True,
    )

    storage_root: Path = Field(
        default=Path("storage"),
        description="Root directory of all stored data (datasets, runs, models, voices, jobs). "
        "On a cluster, a shared mount present on every node.",
    )
    allowed_mounts: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated extra directories that symlinks inside the storage root may point "
        "into (for example a read-only model cache mounted into the container).",
    )
    base_model: str = Field(
        default="xtts-v2",
        description="Model id (a directory name under `<storage_root>/models/`) used when a request names no model.",
    )
    demo_tiny_model: bool = Field(
        default=False,
        description="Serve the project's tiny random-weight model (it produces noise) instead of "
        "`base_model`, creating it under `models/tiny-xtts` if absent. For demos and tests only; "
        "never used as a fallback.",
    )
    coqui_tos_agreed: bool = Field(
        default=False,
        description="Set to true to state that you agree to the Coqui Public Model License "
        "(non-commercial). Required before the official XTTS-v2 weights are downloaded.",
    )
    download_release: bool = Field(
        default=True,
        description="Fetch the official XTTS-v2 release into `models/xtts-v2` when it is absent "
        "(only with `coqui_tos_agreed`).",
    )
    release_url: str = Field(
        default="https://huggingface.co/coqui/XTTS-v2/resolve/main",
        description="Base URL the official release files are fetched from.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="Where models run: `auto` uses CUDA when the process sees a GPU, else CPU.",
    )
    host: str = Field(default="127.0.0.1", description="Address the HTTP ingress listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port the HTTP ingress listens on.")
    ray_address: str | None = Field(
        default=None,
        description="Address of an existing Ray cluster (`auto`, `ray://host:10001`, ...). Unset: "
        "the run command starts a local Ray.",
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated API keys. When set, every route but `/health` and the web page needs "
        "`Authorization: Bearer <key>`. Without keys the service refuses to start on a non-loopback address "
        "(see `AVS_ALLOW_UNAUTHENTICATED`).",
    )
    allow_unauthenticated: bool = Field(
        default=False,
        description="Set to true to serve on a non-loopback address without API keys (every route open to "
        "whoever reaches the address).",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated host names requests may carry in `Host` (e.g. `voice.example.org`). "
        "Empty: the loopback names when the service listens on loopback, any name otherwise.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins (`https://app.example.org`) whose pages may call the API from a "
        "browser (CORS). Empty: no cross-origin access; state-changing requests from other origins get 403.",
    )
    max_json_bytes: int = Field(
        default=262_144,
        gt=0,
        description="Largest body in bytes of routes without uploads (`/v1/audio/speech`, `/training/jobs`, ...). "
        "Upload routes use the upload limits below.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level of the project's loggers."
    )
    default_language: str = Field(default="en", description="Language used when a request names none.")
    default_voice: str = Field(
        default="Claribel Dervla", description="Built-in speaker used when a request names no voice."
    )
    openai_voices: dict[str, str] = Field(
        default_factory=lambda: dict(OPENAI_VOICES),
        description="JSON object mapping OpenAI voice names (`alloy`, `nova`, ...) to built-in XTTS speakers.",
    )
    openai_stream_unit: Literal["pieces", "tokens"] = Field(
        default="pieces",
        description="How `/v1/audio/speech` streams: `pieces` sends each sentence-sized piece as soon as it is "
        "synthesised (full throughput), `tokens` sends audio every few GPT tokens (earliest first byte, about "
        "2.5x the compute). Per request: the `stream_unit` extension field.",
    )
    batch_max_size: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Most pieces of text (from concurrent requests, streams included) one TTS replica decodes "
        "together in one batch; 1 decodes each request alone. A replica batches at most its "
        "`max_ongoing_requests`. Changeable on running replicas through the deployment's user_config.",
    )
    batch_wait_s: float = Field(
        default=0.01,
        ge=0,
        le=5,
        description="Longest time a TTS replica waits for a batch to fill before it starts decoding, seconds.",
    )
    max_upload_bytes: int = Field(
        default=20_000_000, gt=0, description="Largest accepted upload (reference audio, SRT) in bytes."
    )
    max_reference_seconds: float = Field(
        default=30.0, gt=0, description="Longest accepted reference recording, in seconds per file."
    )
    min_reference_seconds: float = Field(
        default=1.0, ge=0, description="Shortest accepted reference recording, in seconds per file."
    )
    max_reference_files: int = Field(default=5, ge=1, description="Most reference files per voice or request.")
    max_audio_channels: int = Field(
        default=8,
        ge=1,
        le=64,
        description="Most channels an uploaded recording may have (8: 7.1 surround); files with more are refused "
        "before decoding. Channels are averaged to mono.",
    )
    audio_decode_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest time decoding one uploaded reference recording may take (in a child process) "
        "before it is stopped and the upload refused, seconds.",
    )
    max_job_chars: int = Field(
        default=100_000, gt=0, description="Most characters of text (or of SRT cue text) one synthesis job accepts."
    )
    max_job_audio_seconds: float = Field(
        default=14_400.0,
        gt=0,
        description="Latest time an SRT cue of a synthesis job may end, in seconds (default 4 hours). The job's "
        "track is held in memory as float32 (about 4 bytes x sample rate per second: 1.4 GB for 4 hours at "
        "24 kHz), so later cues are refused with a 400 naming their line.",
    )
    max_job_attempts: int = Field(
        default=3,
        ge=1,
        description="How many times a synthesis job is started before it is failed: a job found running when "
        "a job runner starts was left by a runner that crashed or was stopped, and is resumed until it has been "
        "attempted this many times.",
    )
    srt_max_stretch: float = Field(
        default=1.3,
        ge=1.0,
        le=4.0,
        description="Largest speed-up (pitch kept) applied to an SRT cue's speech to fit its time slot; speech "
        "still too long is kept, overlapping the next cue, and the job reports a warning.",
    )
    dashboard_address: str | None = Field(
        default=None,
        description="Ray dashboard (Jobs API) that dataset builds and training runs are submitted to, e.g. "
        "`http://head:8265`. Unset: the dashboard of the cluster the service runs on; where there is none "
        "(the embedded default starts Ray without it), they run as a detached Ray actor instead.",
    )
    tensorboard_url: str | None = Field(
        default=None,
        description="URL of a TensorBoard reading `<storage root>/runs` (e.g. `tensorboard --logdir storage/runs`), "
        "given by `GET /training/tensorboard`. Unset: that route says how to start one.",
    )
    dataset_build_cpus: float = Field(
        default=1.0,
        gt=0,
        description="CPUs an API-started dataset build reserves for its Ray Data stages: a quarter each for "
        "decode/VAD and analysis, half for the transcriber (its threads: at least 1); cutting tasks take a "
        "quarter each. Fractions keep builds from waiting forever next to the service's replicas.",
    )
    dataset_whisper_model: str | None = Field(
        default=None,
        description="Whisper model of API-started dataset builds when the request names none: `tiny.en`, "
        "`base` or a local CTranslate2 directory. Unset: `tiny.en` for English, `base` otherwise.",
    )
    max_dataset_files: int = Field(default=200, ge=1, description="Most recordings one `POST /datasets` accepts.")
    max_dataset_file_bytes: int = Field(
        default=500_000_000, gt=0, description="Largest recording `POST /datasets` accepts, in bytes per file."
    )
    job_retry_seconds: float = Field(
        default=600.0,
        gt=0,
        description="How long a job keeps retrying a unit while the TTS deployment is unavailable (replica "
        "died, restarting, queue full) before the job fails; finished units are kept.",
    )

    @field_validator("allowed_mounts", "api_keys", "allowed_hosts", "cors_origins", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("storage_root", mode="after")
    @classmethod
    def _absolute_root(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("allowed_mounts", mode="after")
    @classmethod
    def _absolute_mounts(cls, value: list[Path]) -> list[Path]:
        for path in value:
            if not path.is_absolute():
                raise ValueError(f"'{path}' is relative; give absolute paths")
        return value

    @classmethod
    def load(cls, **overrides: object) -> Settings:
        """Read the settings from the environment and `.env`, failing with a readable message.

        Args:
            **overrides: values that take precedence over the environment (used by CLIs and tests).

        Returns:
            The validated settings.

        Raises:
            ConfigError: a value is invalid; the message names the environment variable.
        """
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """Turn a pydantic validation error on Settings into lines naming the env variables.

    Args:
        exc: the error raised while building ``Settings``.

    Returns:
        A message with one line per invalid variable and a hint where to fix it.
    """
    lines = ["invalid settings:"]
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        # Unknown keys from .env keep their prefix in ``loc`` ("avs_prot"); fields do not.
        variable = field.upper() if field.upper().startswith(ENV_PREFIX) else f"{ENV_PREFIX}{field.upper()}"
        if error["type"] == "extra_forbidden":
            lines.append(f"  {variable}: unknown setting (check the spelling; see the README settings table)")
            continue
        value = error.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"  {variable}: {error['msg']}{shown}")
    lines.append("Fix the environment variable or the line in .env and start again.")
    return "\n".join(lines)


def settings_table() -> str:
    """Render the settings as a Markdown table (variable, default, description) for the README.

    Returns:
        The table, one row per field, in declaration order.
    """
    rows = ["| variable | default | description |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            value = field.default_factory()  # type: ignore[call-arg]
            default = f"`{json.dumps(value, separators=(',', ':'))}`" if value else "(empty)"
        elif field.default is None:
            default = "(unset)"
        else:
            default = f"`{field.default}`"
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | {default} | {field.description} |")
    return "\n".join(rows)
