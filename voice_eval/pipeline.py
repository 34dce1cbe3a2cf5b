"""Scoring a set of clips: a Ray Data pipeline (ASR and speaker-encoder actors) or a plain loop.

Both run the same steps (:mod:`voice_eval.stages`) with the same models, so they give the same
records; the loop suits a handful of clips, the pipeline overlaps decoding, transcription and speaker
embedding across cores. Every item's language and text are checked (and its files looked up) before
Ray starts or a model loads. Each stage reserves CPUs explicitly (:class:`PipelineOptions`), so the
pools fit a two-core machine.

Called with synthesised audio, an item's ``clip`` is :class:`voice_eval.score.Samples`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep.runtime import ensure_ray
from voice_core.errors import ConfigError, InvalidInputError
from voice_eval import asr
from voice_eval.score import ClipScore, Source, check_text, default_cache_dir
from voice_eval.stages import AsrStage, EncoderStage, Row, decode_row, score_from_row, source_fields


@dataclass(frozen=True)
class EvalItem:
    """One clip to score.

    Attributes:
        clip: the clip: a path, an audio file's bytes, or :class:`voice_eval.score.Samples`.
        text: what it should say.
        language: the text's language code.
        reference: a recording of the voice it imitates (same forms as ``clip``).
        id: a name for the clip in the report (its index when empty).
    """

    clip: Source
    text: str
    language: str
    reference: Source
    id: str = ""


@dataclass(frozen=True)
class ScoredClip:
    """The outcome for one item: its record, or why it could not be scored.

    Attributes:
        id: the item's id.
        text: what it should say.
        language: its language code.
        score: the quality record, ``None`` when ``error`` is set.
        error: why the clip could not be scored (undecodable, reference without speech), else ``None``.
    """

    id: str
    text: str
    language: str
    score: ClipScore | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the id, text and language, then the record's fields or the error."""
        head = {"id": self.id, "text": self.text, "language": self.language}
        return head | (self.score.to_dict() if self.score is not None else {"error": self.error})


@dataclass(frozen=True)
class PipelineOptions:
    """CPU reservations and pool sizes of the Ray Data pipeline (defaults fit two cores).

    Attributes:
        decode_num_cpus: CPUs of each decode + signal-check task.
        asr_pool_size: faster-whisper actors (two one-thread models transcribe short clips faster than
            one two-thread model, as data_prep measured).
        asr_num_cpus: CPUs reserved by each of them.
        asr_cpu_threads: CTranslate2 threads of each.
        encoder_pool_size: speaker-encoder actors.
        encoder_num_cpus: CPUs reserved by each of them.
        local_num_cpus: CPUs of a local Ray started here (all cores when ``None``).
    """

    def actor_cpus(self) -> float:
        """CPUs the actor pools hold, plus one decode task."""
        pools = self.asr_pool_size * self.asr_num_cpus + self.encoder_pool_size * self.encoder_num_cpus
        return pools + self.decode_num_cpus

    decode_num_cpus: float = 0.25
    asr_pool_size: int = 2
    asr_num_cpus: float = 0.75
    asr_cpu_threads: int = 1
    encoder_pool_size: int = 1
    encoder_num_cpus: float = 0.25
    local_num_cpus: int | None = None


def check_items(items: Sequence[EvalItem], asr_model: str) -> list[Row]:
    """Check every item before any compute and turn it into a pipeline row.

    Raises:
        InvalidInputError: no items, a language the ASR model cannot transcribe, a text without words,
            or a clip/reference path that is not a file (the message names the item).
    """
    if not items:
        raise InvalidInputError("no clips to score; give at least one item")
    rows = []
    for index, item in enumerate(items):
        name = item.id or str(index)
        try:
            check_text(item.text, item.language, asr_model)
            for label, source in (("clip", item.clip), ("reference", item.reference)):
                if isinstance(source, (str, os.PathLike)) and not Path(source).is_file():
                    raise InvalidInputError(f"{label} {str(source)!r} does not exist or is not a file")
        except InvalidInputError as exc:
            raise InvalidInputError(f"item {name!r}: {exc}") from None
        fields = source_fields("clip", item.clip) | source_fields("reference", item.reference)
        rows.append({"index": index, "id": name, "text": item.text, "language": item.language, **fields})
    return rows


def _scored(row: Row) -> ScoredClip:
    score = score_from_row(row)
    return ScoredClip(str(row["id"]), row["text"], row["language"], score, row["error"] or None)


def _collect(rows: Iterable[Row], total: int, progress: bool) -> list[ScoredClip]:
    from tqdm import tqdm

    out: dict[int, ScoredClip] = {}
    for row in tqdm(rows, total=total, desc="scoring", unit="clip", disable=not progress):
        out[int(row["index"])] = _scored(row)
    return [out[index] for index in sorted(out)]


def score_clips_sequential(
    items: Sequence[EvalItem],
    *,
    asr_model: str = asr.DEFAULT_ASR_MODEL,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> list[ScoredClip]:
    """Score ``items`` in this process, one after another, with the pipeline's steps and models.

    Raises:
        InvalidInputError: see :func:`check_items` (nothing is decoded or loaded then).
    """
    rows = check_items(items, asr_model)
    cache = str(cache_dir if cache_dir is not None else default_cache_dir())
    transcriber, encoder = AsrStage(asr_model, cache), EncoderStage()
    return _collect((encoder(transcriber(decode_row(row, asr_model))) for row in rows), len(rows), progress)


def _check_fit(options: PipelineOptions) -> None:
    import ray

    total = float(ray.cluster_resources().get("CPU", 0))
    if options.actor_cpus() > total + 1e-9:
        raise ConfigError(
            f"the scoring pipeline needs {options.actor_cpus():g} CPUs (ASR {options.asr_pool_size}x"
            f"{options.asr_num_cpus:g}, encoder {options.encoder_pool_size}x{options.encoder_num_cpus:g}, decode "
            f"{options.decode_num_cpus:g}) but the Ray cluster has {total:g}; lower the PipelineOptions reservations "
            "or Ray Data would wait forever"
        )


def _pipeline_rows(rows: list[Row], asr_model: str, cache: str, options: PipelineOptions) -> Iterator[Row]:
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    context = DataContext.get_current()
    saved = context.enable_progress_bars
    context.enable_progress_bars = False  # score_clips shows its own bar
    try:
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map(decode_row, fn_kwargs={"asr_model": asr_model}, num_cpus=options.decode_num_cpus)
        ds = ds.map(
            AsrStage,
            fn_constructor_kwargs={"asr_model": asr_model, "cache_dir": cache, "cpu_threads": options.asr_cpu_threads},
            compute=ActorPoolStrategy(size=options.asr_pool_size),
            num_cpus=options.asr_num_cpus,
        )
        ds = ds.map(
            EncoderStage,
            compute=ActorPoolStrategy(size=options.encoder_pool_size),
            num_cpus=options.encoder_num_cpus,
        )
        yield from ds.iter_rows()
    finally:
        context.enable_progress_bars = saved


def score_clips(
    items: Sequence[EvalItem],
    *,
    asr_model: str = asr.DEFAULT_ASR_MODEL,
    cache_dir: str | os.PathLike[str] | None = None,
    options: PipelineOptions | None = None,
    progress: bool = False,
    on_connect: Callable[[], None] | None = None,
) -> list[ScoredClip]:
    """Score ``items`` through the Ray Data pipeline; results come back in the items' order.

    Args:
        items: the clips with their texts, languages and references.
        asr_model: ``tiny.en`` (English only), ``base`` or a CTranslate2 Whisper directory.
        cache_dir: where ``base`` is joined; ``<storage_root>/cache/whisper`` by default.
        options: CPU reservations and pool sizes.
        progress: show a progress bar.
        on_connect: called once Ray is up, before the pipeline starts (the benchmark times from here).

    Returns:
        One :class:`ScoredClip` per item.

    Raises:
        InvalidInputError: see :func:`check_items` (raised before Ray starts).
        ConfigError: the actor pools need more CPUs than the Ray cluster has.
    """
    options = options or PipelineOptions()
    rows = check_items(items, asr_model)
    cache = str(cache_dir if cache_dir is not None else default_cache_dir())
    started = ensure_ray(options.local_num_cpus)
    try:
        _check_fit(options)
        if on_connect is not None:
            on_connect()
        return _collect(_pipeline_rows(rows, asr_model, cache, options), len(rows), progress)
    finally:
        if started:
            import ray

            ray.shutdown()
