"""The tiny XTTS model: the real coqui architecture with small dimensions and random weights.

It is written in exactly the release layout so every code path (load, clone, synthesise, stream,
train, export, serve) runs on it where the official weights cannot be downloaded. It produces
noise; its ``manifest.json`` says ``"untrained": true`` and everything that shows it says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from voice_core.errors import InvalidInputError
from voice_core.manifest import write_manifest
from voice_core.settings import OPENAI_VOICES
from voice_core.storage import atomic_directory, atomic_write_text
from voice_core.xtts_model import set_decoder_width

TINY_MODEL_ID = "tiny-xtts"
TINY_LANGUAGES: tuple[str, ...] = ("en", "pt", "es", "fr", "de", "it")
# The speakers the default OpenAI voice names map to, so every OpenAI voice works on the tiny model too.
TINY_SPEAKERS: tuple[str, ...] = tuple(OPENAI_VOICES.values())
SPECIAL_TOKENS: tuple[str, ...] = ("[STOP]", "[UNK]", "[SPACE]", "[START]")

# Text the BPE vocabulary is trained on: enough English and Portuguese to give real merges.
_CORPUS = """
the quick brown fox jumps over the lazy dog. this is a test of the voice service.
hello world, how are you today? i am fine, thank you. speech synthesis with a cloned voice.
please read the following sentence slowly and clearly. one two three four five six seven eight nine ten.
o rápido cachorro marrom pula sobre a raposa preguiçosa. olá, tudo bem com você? estou bem, obrigado.
a síntese de voz transforma texto em fala. um dois três quatro cinco seis sete oito nove dez.
el veloz murciélago hindú comía feliz cardillo y kiwi. le cœur a ses raisons que la raison ignore.
der schnelle braune fuchs springt über den faulen hund. la vita è bella quando si canta.
"""
_ALPHABET = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789.,!?;:'\"-()áàâãéêíóôõúüçñèëîïœùûäößìò"))


@dataclass(frozen=True)
class TinyModelSpec:
    """Dimensions of the tiny model.

    The release uses 30 layers, 1024 channels and 16 heads, and a HiFiGAN of width 512. The tiny
    decoder is narrow (32) so that, as with the release model on a GPU, the GPT's token-by-token
    decoding rather than the vocoder dominates a request; at width 512 the decoder took 94 % of a
    tiny-model request on CPU. Width 512 gives a model coqui's own ``Xtts.load_checkpoint`` loads.
    """

    gpt_layers: int = 2
    gpt_n_model_channels: int = 64
    gpt_n_heads: int = 4
    gpt_max_audio_tokens: int = 80
    vocab_size: int = 300
    decoder_width: int = 32
    seed: int = 0


def build_vocab(path: Path, vocab_size: int) -> None:
    """Train a deterministic byte-free BPE vocabulary with the XTTS special and language tokens.

    Args:
        path: where ``vocab.json`` is written.
        vocab_size: total vocabulary size including special tokens.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = [*SPECIAL_TOKENS, *(f"[{lang}]" for lang in TINY_LANGUAGES)]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=_ALPHABET, show_progress=False
    )
    tokenizer.train_from_iterator(_CORPUS.strip().splitlines(), trainer=trainer)
    atomic_write_text(path, tokenizer.to_str(pretty=True))


def tiny_config(spec: TinyModelSpec) -> object:
    """Return the coqui ``XttsConfig`` of the tiny model (release flags, small dimensions)."""
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import XttsArgs

    args = XttsArgs(
        gpt_layers=spec.gpt_layers,
        gpt_n_model_channels=spec.gpt_n_model_channels,
        gpt_n_heads=spec.gpt_n_heads,
        gpt_max_audio_tokens=spec.gpt_max_audio_tokens,
        gpt_max_text_tokens=402,
        gpt_max_prompt_tokens=70,
        # The DVAE has 1024 codes, so the audio vocabulary stays as in the release.
        gpt_num_audio_tokens=1026,
        gpt_start_audio_token=1024,
        gpt_stop_audio_token=1025,
        gpt_use_masking_gt_prompt_approach=True,
        gpt_use_perceiver_resampler=True,
        decoder_input_dim=spec.gpt_n_model_channels,
        d_vector_dim=512,
        cond_d_vector_in_each_upsampling_layer=True,
    )
    config = XttsConfig(model_args=args, languages=list(TINY_LANGUAGES))
    config.model_args.tokenizer_file = ""
    return config


def make_tiny_model(output_dir: str | Path, spec: TinyModelSpec | None = None) -> Path:
    """Write a random-weight XTTS model in the release layout.

    Files: ``config.json``, ``model.pth``, ``vocab.json``, ``speakers_xtts.pth`` (two named
    speakers), ``dvae.pth``, ``mel_stats.pth`` and ``manifest.json`` (``"untrained": true``).
    The same spec (and seed) gives byte-identical files.

    Args:
        output_dir: the model directory to create; must not exist or be empty.
        spec: dimensions and seed; defaults to :class:`TinyModelSpec`.

    Returns:
        The model directory.
    """
    import torch
    from TTS.tts.layers.xtts.dvae import DiscreteVAE
    from TTS.tts.models.xtts import Xtts

    spec = spec or TinyModelSpec()
    if spec.decoder_width < 16 or spec.decoder_width % 16:
        # HiFiGAN halves its channels at each of its four upsampling stages.
        raise InvalidInputError(
            f"decoder width {spec.decoder_width} is not a multiple of 16 of at least 16; use 32 (tiny) or 512 (release)"
        )
    target = Path(output_dir)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and is not empty; choose another directory or remove it")
    with atomic_directory(target) as work:
        build_vocab(work / "vocab.json", spec.vocab_size)
        config = tiny_config(spec)
        config.save_json(str(work / "config.json"))
        generator_state = torch.random.get_rng_state()
        try:
            torch.manual_seed(spec.seed)
            model = Xtts(config)
            from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

            model.tokenizer = VoiceBpeTokenizer(vocab_file=str(work / "vocab.json"))
            model.init_models()
            set_decoder_width(model, spec.decoder_width)
            torch.save({"model": model.state_dict()}, work / "model.pth")
            dvae = DiscreteVAE(
                channels=80,
                normalization=None,
                positional_dims=1,
                num_tokens=1024,
                codebook_dim=512,
                hidden_dim=512,
                num_resnet_blocks=3,
                kernel_size=3,
                num_layers=2,
                use_transposed_convs=False,
            )
            torch.save(dvae.state_dict(), work / "dvae.pth")
            torch.save(torch.rand(80) * 0.5 + 0.75, work / "mel_stats.pth")
            speakers = {
                name: {
                    "gpt_cond_latent": torch.randn(1, 32, spec.gpt_n_model_channels) * 0.1,
                    "speaker_embedding": torch.nn.functional.normalize(torch.randn(1, 512, 1), dim=1),
                }
                for name in TINY_SPEAKERS
            }
            torch.save(speakers, work / "speakers_xtts.pth")
        finally:
            torch.random.set_rng_state(generator_state)
        write_manifest(
            work,
            {
                "model_id": target.name,
                "kind": "tiny-random",
                "untrained": True,
                "warning": "random weights: this model produces noise, not speech",
                "spec": spec.__dict__,
                "languages": list(TINY_LANGUAGES),
                "speakers": list(TINY_SPEAKERS),
            },
        )
    return target
