"""Raw speech → padded dialogue tensors for HCAM, plus a file loader that works without FFmpeg shared libraries.

Part of the Hub remote-code bundle: flat file, no project imports. Optional readers (soundfile, torchaudio,
imageio-ffmpeg) are imported inside ``try`` blocks so that transformers' import check does not make them
mandatory for users who only pass arrays.
"""
from __future__ import annotations

import os
import subprocess

import numpy as np
import torch
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.utils import logging

logger = logging.get_logger(__name__)

# The rate wav2vec2-family encoders and Whisper take: hcam's readers, recordings and ASR resample to it.
SAMPLING_RATE = 16000


class HCAMAudioError(ValueError):
    """Audio that cannot be used (missing, corrupt, empty, silent, non-finite, wrong rate); the message names the item."""


def _resample(waveform: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    try:
        import torchaudio.functional as taf
    except ImportError as error:  # pragma: no cover - torchaudio is a declared dependency
        raise HCAMAudioError(
            f"resampling from {orig_rate} Hz to {new_rate} Hz needs torchaudio: `pip install torchaudio`"
        ) from error
    resampled = taf.resample(torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32)), orig_rate, new_rate)
    return resampled.numpy()


def _decode_with_ffmpeg(path: str, sampling_rate: int) -> np.ndarray:
    try:
        import imageio_ffmpeg
    except ImportError as error:
        raise HCAMAudioError(
            f"cannot read {path!r}: soundfile does not support this format and imageio-ffmpeg is not installed. "
            "Run `pip install imageio-ffmpeg`, or convert the file to wav/flac."
        ) from error
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", path,
        "-vn", "-ac", "1", "-ar", str(int(sampling_rate)), "-f", "f32le", "-",
    ]
    result = subprocess.run(command, capture_output=True)
    if result.returncode != 0:
        stderr = result.stderr.decode("utf-8", "replace").strip()
        reason = stderr.splitlines()[-1] if stderr else f"ffmpeg exit code {result.returncode}"
        if "does not contain any stream" in stderr or "matches no streams" in stderr:
            raise HCAMAudioError(
                f"cannot decode audio from {path!r}: the file has no audio stream ({reason}). Use the recording that "
                "has sound, or drop this utterance."
            )
        raise HCAMAudioError(
            f"cannot decode audio from {path!r}: the file is corrupt or not a media file ({reason}). "
            "Re-extract or re-download it, or drop this utterance."
        )
    return np.frombuffer(result.stdout, dtype="<f4").astype(np.float32)


def load_audio(path: str | os.PathLike, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """Read an audio (or video) file as float32 mono at `sampling_rate`.

    Args:
        path: audio file. wav/flac/ogg/mp3 are read with soundfile; anything soundfile cannot read (mp4, m4a, ...)
            is decoded by the ffmpeg executable shipped by imageio-ffmpeg (no FFmpeg shared libraries needed).
        sampling_rate: target rate in Hz; other rates are resampled with `torchaudio.functional.resample`.

    Returns:
        1-D `np.float32` array (channels averaged).

    Raises:
        HCAMAudioError: the file is missing, corrupt, has no audio stream or holds zero samples.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise HCAMAudioError(f"audio file not found: {path!r}. Check the path (readers store absolute paths) or drop this utterance.")
    waveform = None
    try:
        import soundfile

        try:
            data, file_rate = soundfile.read(path, dtype="float32", always_2d=True)
            waveform = data.mean(axis=1, dtype=np.float32)
        except (RuntimeError, getattr(soundfile, "SoundFileError", RuntimeError)):
            waveform = None  # not a libsndfile format (or corrupt): let ffmpeg decide and report
    except ImportError:
        pass
    if waveform is None:
        waveform, file_rate = _decode_with_ffmpeg(path, sampling_rate), sampling_rate
    if waveform.size == 0:
        raise HCAMAudioError(f"audio file {path!r} contains zero samples: re-extract it or drop this utterance.")
    if file_rate != sampling_rate:
        waveform = _resample(waveform, int(file_rate), int(sampling_rate))
    return np.ascontiguousarray(waveform, dtype=np.float32)


def is_audio_span(audio) -> bool:
    """Whether `audio` is a span of a file, `{"path": ..., "start": seconds, "end": seconds[, "channel": k]}`, read
    only when needed (`load_audio_span`)."""
    return isinstance(audio, dict) and "path" in audio and "start" in audio and "end" in audio


def load_audio_span(path: str | os.PathLike, start: float, end: float, sampling_rate: int = SAMPLING_RATE,
                    channel: int | None = None) -> np.ndarray:
    """Read `[start, end]` seconds of an audio file as float32 at `sampling_rate`, without reading the rest: a turn
    of a long recording, read when it is needed.

    Args:
        path: an audio file soundfile reads (wav, flac, ogg, mp3).
        start, end: the span in seconds; `end` past the file's end stops there.
        sampling_rate: target rate in Hz; each channel is resampled (`torchaudio.functional.resample`), then mixed.
        channel: read this channel (0-based) alone instead of the mix of all channels.

    Raises:
        HCAMAudioError: the file is missing or not readable by soundfile, the channel does not exist, or the span
            holds no samples.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise HCAMAudioError(f"audio file not found: {path!r}")
    try:
        import soundfile

        with soundfile.SoundFile(path) as f:
            rate, frames, channels = f.samplerate, f.frames, f.channels
            first, last = int(round(float(start) * rate)), min(frames, int(round(float(end) * rate)))
            if not 0 <= first < last:
                raise HCAMAudioError(f"audio span {start}-{end} s of {path!r} holds no samples (the file is "
                                     f"{frames / rate:.2f} s long)")
            f.seek(first)
            data = f.read(last - first, dtype="float32", always_2d=True)
    except ImportError as error:
        raise HCAMAudioError(f"reading a span of {path!r} needs soundfile: `pip install soundfile`") from error
    except (RuntimeError, getattr(soundfile, "SoundFileError", RuntimeError)) as error:  # not a libsndfile format
        raise HCAMAudioError(f"cannot read a span of {path!r} ({error}): give a wav/flac/ogg/mp3 file, or read "
                             "the whole file with load_audio") from error
    if channel is not None and not 0 <= int(channel) < channels:
        raise HCAMAudioError(f"{path!r} has {channels} channel(s), no channel {channel}")
    waveforms = [data[:, int(channel)]] if channel is not None else list(data.T)
    if rate != sampling_rate:
        waveforms = [_resample(w, int(rate), int(sampling_rate)) for w in waveforms]
    waveform = waveforms[0] if len(waveforms) == 1 else np.stack(waveforms).mean(axis=0)
    return np.ascontiguousarray(waveform, dtype=np.float32)


def load_audio_bytes(data: bytes, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """`load_audio` of an encoded file's bytes (wav/flac/ogg/mp3 through soundfile, anything else through ffmpeg)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hcam-audio-") as folder:
        path = os.path.join(folder, "audio")
        with open(path, "wb") as f:
            f.write(bytes(data))
        try:
            return load_audio(path, sampling_rate)
        except HCAMAudioError as error:
            raise HCAMAudioError(str(error).replace(repr(path), f"the given bytes ({len(data)} bytes)")) from None


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _is_utterance(value) -> bool:
    """An utterance is an array/tensor, a path, or a flat list of numbers."""
    if isinstance(value, (np.ndarray, torch.Tensor, str, os.PathLike)):
        return True
    return isinstance(value, (list, tuple)) and len(value) > 0 and _is_number(value[0])


def as_dialogue_batch(raw_speech) -> tuple[list[list], bool]:
    """Bring one utterance, one dialogue or a batch of dialogues to a batch (list of lists of utterances).

    Returns the batch and whether the input already was a batch of dialogues.
    """
    if _is_utterance(raw_speech):
        return [[raw_speech]], False
    if not isinstance(raw_speech, (list, tuple)) or len(raw_speech) == 0:
        raise HCAMAudioError(
            "audio must be one utterance (1-D array), one dialogue (list of arrays) or a batch of dialogues "
            f"(list of lists of arrays); got {type(raw_speech).__name__}"
            + (" of length 0" if isinstance(raw_speech, (list, tuple)) else "")
        )
    if all(_is_utterance(turn) for turn in raw_speech):
        return [list(raw_speech)], False
    batch = []
    for dialogue_index, dialogue in enumerate(raw_speech):
        if not isinstance(dialogue, (list, tuple)) or not all(_is_utterance(turn) for turn in dialogue):
            raise HCAMAudioError(
                f"audio dialogue {dialogue_index}: expected a list of utterances (1-D arrays or file paths), "
                f"got {type(dialogue).__name__}"
            )
        batch.append(list(dialogue))
    return batch, True


class HCAMFeatureExtractor(SequenceFeatureExtractor):
    r"""Turns dialogues of raw speech into the padded `[dialogues, turns, samples]` tensors HCAM's wav2vec2 reads.

    Args:
        feature_size (`int`, defaults to 1): one value per sample (raw waveform).
        sampling_rate (`int`, defaults to 16000): rate the audio encoder was pretrained at. Stage I copies it, with
            `do_normalize` and `padding_value`, from the encoder's own feature extractor
            (`hcam.processing.encoders.speech_feature_settings`).
        padding_value (`float`, defaults to 0.0): value of padded samples (masked out anyway).
        do_normalize (`bool`, defaults to `True`): zero-mean unit-variance per utterance over its real samples, as
            wav2vec2-base expects (WavLM-base-plus, for one, does not).
        return_attention_mask (`bool`, defaults to `True`): return the sample-level mask.
        max_duration_seconds (`float`, *optional*, defaults to 15.0): longer utterances are cut to their first
            `max_duration_seconds` (IEMOCAP/MELD turns are mostly < 10 s; wav2vec2 memory grows quadratically with
            length). `None` keeps everything.
        min_duration_seconds (`float`, defaults to 0.05): shorter utterances raise an error (wav2vec2's convolutions
            need at least 400 samples = 25 ms for one frame).
        resample (`bool`, defaults to `False`): resample audio given at another rate; when `False` such audio raises
            an error naming the expected rate.
        silence_threshold (`float`, defaults to 1e-4): an utterance whose peak absolute amplitude is at or below this
            is treated as silent and raises an error (normalising it would only amplify noise).
    """

    model_input_names = ["input_values", "attention_mask", "utterance_mask"]

    def __init__(
        self,
        feature_size: int = 1,
        sampling_rate: int = SAMPLING_RATE,
        padding_value: float = 0.0,
        do_normalize: bool = True,
        return_attention_mask: bool = True,
        max_duration_seconds: float | None = 15.0,
        min_duration_seconds: float = 0.05,
        resample: bool = False,
        silence_threshold: float = 1e-4,
        **kwargs,
    ):
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        if max_duration_seconds is not None and max_duration_seconds < min_duration_seconds:
            raise ValueError(
                f"max_duration_seconds ({max_duration_seconds}) is below min_duration_seconds ({min_duration_seconds})"
            )
        self.do_normalize = do_normalize
        self.max_duration_seconds = max_duration_seconds
        self.min_duration_seconds = min_duration_seconds
        self.resample = resample
        self.silence_threshold = silence_threshold

    def _to_mono_float(self, utterance, where: str, sampling_rate: int) -> tuple[np.ndarray, int]:
        if isinstance(utterance, (str, os.PathLike)):
            return load_audio(utterance, self.sampling_rate), self.sampling_rate
        if isinstance(utterance, torch.Tensor):
            utterance = utterance.detach().cpu().numpy()
        waveform = np.asarray(utterance)
        if waveform.dtype.kind in "iu":  # integer PCM → [-1, 1]
            waveform = waveform.astype(np.float32) / float(np.iinfo(waveform.dtype).max)
        elif waveform.dtype.kind != "f":
            raise HCAMAudioError(f"audio {where}: expected float or integer samples, got dtype {waveform.dtype}")
        if waveform.ndim == 2:
            channel_axis = int(np.argmin(waveform.shape))
            if waveform.shape[channel_axis] > 8:
                raise HCAMAudioError(
                    f"audio {where}: a 2-D array is read as one multi-channel utterance ([n, channels] or "
                    f"[channels, n]) but its shape is {waveform.shape}; give a dialogue as a list of 1-D arrays"
                )
            waveform = waveform.mean(axis=channel_axis, dtype=np.float32)
        elif waveform.ndim != 1:
            raise HCAMAudioError(f"audio {where}: expected a 1-D waveform (or 2-D stereo), got shape {waveform.shape}")
        return waveform.astype(np.float32, copy=False), sampling_rate

    def waveform(self, audio, where: str = "audio", sampling_rate: int | None = None) -> np.ndarray:
        """One utterance as float32 mono at this extractor's rate: a file path (decoded with `load_audio`), an encoded
        file's bytes, a 1-D array or tensor at `sampling_rate` (integer PCM is scaled, 2-D stereo averaged), or a dict
        `{"array" or "raw": ..., "sampling_rate": ...}` (transformers' pipelines) or `{"bytes": ..., "path": ...}`
        (🤗 datasets' undecoded Audio), or a span of a file `{"path": ..., "start": s, "end": s[, "channel": k]}`
        (`load_audio_span`: only that span is read); resampled when its rate differs. A bare array without `sampling_rate` is read
        at this extractor's rate, with a warning (once). `where` names it in errors."""
        rate = int(self.sampling_rate)
        if is_audio_span(audio):
            try:
                return load_audio_span(audio["path"], audio["start"], audio["end"], rate, audio.get("channel"))
            except ValueError as error:
                raise type(error)(f"{where}: {error}") from error
        if isinstance(audio, dict) and ("bytes" in audio or "path" in audio) and not ({"array", "raw"} & set(audio)):
            audio = audio.get("bytes") or audio.get("path")
        if isinstance(audio, (bytes, bytearray)):
            try:
                return load_audio_bytes(audio, rate)
            except ValueError as error:
                raise type(error)(f"{where}: {error}") from error
        if isinstance(audio, (str, os.PathLike)):
            try:
                return load_audio(audio, rate)
            except ValueError as error:
                raise type(error)(f"{where}: {error}") from error
        given_rate = sampling_rate
        if isinstance(audio, dict):
            key = "array" if "array" in audio else "raw" if "raw" in audio else None
            if key is None:
                raise HCAMAudioError(f"{where}: an audio dict needs 'array' or 'raw' (and 'sampling_rate'), or 'bytes' "
                                     f"or 'path'; got keys {sorted(audio)}")
            given_rate = audio.get("sampling_rate", sampling_rate)
            audio = audio[key]
        if given_rate is None:
            given_rate = rate
            logger.warning_once(f"Audio given as a bare array, without a sampling rate: read as {rate} Hz (warned "
                                "once). Give {'array': ..., 'sampling_rate': ...} (or a file) if it was recorded at "
                                "another rate.")
        given_rate = int(given_rate)
        waveform, _ = self._to_mono_float(audio, where, given_rate)
        if waveform.size == 0:
            raise HCAMAudioError(f"{where}: audio must be a non-empty waveform")
        if given_rate != rate:
            waveform = _resample(waveform, given_rate, rate)
        return waveform

    def __call__(
        self,
        raw_speech,
        sampling_rate: int | None = None,
        return_tensors: str | None = "pt",
        return_attention_mask: bool | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Pad one utterance, one dialogue (list of utterances) or a batch of dialogues (list of lists).

        Args:
            raw_speech: utterances are 1-D float arrays/tensors (2-D stereo arrays are averaged over channels;
                integer PCM is scaled to [-1, 1]) or file paths (read with `load_audio` at this extractor's rate).
            sampling_rate: rate of the given arrays; `None` means `self.sampling_rate`.
            return_tensors: "pt", "np" or `None` (numpy).

        Returns:
            `BatchFeature` with `input_values` float [D, T, S], `attention_mask` long [D, T, S] and
            `utterance_mask` long [D, T] (1 = real turn).
        """
        if kwargs:
            raise TypeError(f"HCAMFeatureExtractor got unexpected arguments: {sorted(kwargs)}")
        if sampling_rate is None:
            sampling_rate = self.sampling_rate
        if sampling_rate != self.sampling_rate and not self.resample:
            raise HCAMAudioError(
                f"audio was given at {sampling_rate} Hz but this feature extractor expects {self.sampling_rate} Hz: "
                "resample it first, or create the feature extractor with resample=True"
            )
        return_attention_mask = self.return_attention_mask if return_attention_mask is None else return_attention_mask
        batch, _ = as_dialogue_batch(raw_speech)
        waveforms, positions = self._waveforms(batch, sampling_rate)
        flat, starts, lengths = self._checked_samples(waveforms, positions)
        return self._pad(batch, flat, starts, lengths, positions, return_attention_mask, return_tensors)

    def _waveforms(self, batch, sampling_rate):
        """Each utterance as a mono float array at this extractor's rate, cut to max_duration_seconds, with its
        (dialogue, turn) position."""
        waveforms, positions = [], []
        max_samples = None if self.max_duration_seconds is None else int(round(self.max_duration_seconds * self.sampling_rate))
        for dialogue_index, dialogue in enumerate(batch):
            if len(dialogue) == 0:
                raise HCAMAudioError(f"audio dialogue {dialogue_index} has no turns")
            for turn_index, utterance in enumerate(dialogue):
                where = f"dialogue {dialogue_index}, turn {turn_index}"
                try:
                    waveform, rate = self._to_mono_float(utterance, where, sampling_rate)
                except HCAMAudioError as error:
                    if isinstance(utterance, (str, os.PathLike)):
                        raise HCAMAudioError(f"audio {where}: {error}") from error
                    raise
                if rate != self.sampling_rate and waveform.size:
                    waveform = _resample(waveform, rate, self.sampling_rate)
                if max_samples is not None and waveform.shape[0] > max_samples:
                    logger.warning_once(f"Audio longer than {self.max_duration_seconds:g} s is cut to its first "
                                        f"{self.max_duration_seconds:g} s (max_duration_seconds / --max_audio_seconds; "
                                        "warned once).")
                    waveform = waveform[:max_samples]
                waveforms.append(waveform)
                positions.append((dialogue_index, turn_index))
        return waveforms, np.asarray(positions, dtype=np.int64)

    def _checked_samples(self, waveforms, positions):
        """All real samples in one flat array (per-utterance statistics via reduceat, no python loop over samples),
        checked for too-short, non-finite and silent utterances, normalised when `do_normalize`.
        Returns (flat samples, start of each utterance, its length)."""
        lengths = np.fromiter((w.shape[0] for w in waveforms), dtype=np.int64, count=len(waveforms))
        min_samples = int(np.ceil(self.min_duration_seconds * self.sampling_rate))
        too_short = np.flatnonzero(lengths < max(min_samples, 1))
        if too_short.size:
            d, t = positions[too_short[0]]
            raise HCAMAudioError(
                f"audio dialogue {d}, turn {t} is {lengths[too_short[0]] / self.sampling_rate:.3f} s long, shorter than "
                f"min_duration_seconds={self.min_duration_seconds}: drop this utterance or pad it"
            )
        flat = np.concatenate(waveforms) if len(waveforms) > 1 else waveforms[0]
        starts = np.zeros(len(waveforms), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        finite = np.isfinite(flat)
        if not finite.all():
            bad = int(np.searchsorted(starts, np.argmin(finite), side="right") - 1)
            d, t = positions[bad]
            raise HCAMAudioError(f"audio dialogue {d}, turn {t} contains NaN or infinite samples: fix or drop this utterance")
        peaks = np.maximum.reduceat(np.abs(flat), starts)
        silent = np.flatnonzero(peaks <= self.silence_threshold)
        if silent.size:
            d, t = positions[silent[0]]
            raise HCAMAudioError(
                f"audio dialogue {d}, turn {t} is silent (peak amplitude {peaks[silent[0]]:.2e} <= "
                f"silence_threshold={self.silence_threshold}): check the recording or drop this utterance"
            )
        if self.do_normalize:
            means = np.add.reduceat(flat, starts, dtype=np.float64) / lengths
            centred = flat - np.repeat(means.astype(np.float32), lengths)
            variances = np.add.reduceat(centred * centred, starts, dtype=np.float64) / lengths
            flat = centred / np.repeat(np.sqrt(variances + 1e-7).astype(np.float32), lengths)
        return flat, starts, lengths

    def _pad(self, batch, flat, starts, lengths, positions, return_attention_mask, return_tensors):
        """Scatter the samples into a padded [D, T, S] grid; masks for samples and turns."""
        num_dialogues = len(batch)
        num_turns = max(len(dialogue) for dialogue in batch)
        num_samples = int(lengths.max())
        row_offsets = (positions[:, 0] * num_turns + positions[:, 1]) * num_samples
        destinations = np.repeat(row_offsets - starts, lengths) + np.arange(flat.shape[0], dtype=np.int64)
        input_values = np.full((num_dialogues, num_turns, num_samples), self.padding_value, dtype=np.float32)
        input_values.reshape(-1)[destinations] = flat

        length_grid = np.zeros((num_dialogues, num_turns), dtype=np.int64)
        length_grid[positions[:, 0], positions[:, 1]] = lengths
        turn_counts = np.array([len(dialogue) for dialogue in batch], dtype=np.int64)
        data = {"input_values": input_values}
        if return_attention_mask:
            data["attention_mask"] = (np.arange(num_samples) < length_grid[..., None]).astype(np.int64)
        data["utterance_mask"] = (np.arange(num_turns) < turn_counts[:, None]).astype(np.int64)
        return BatchFeature(data, tensor_type=return_tensors)


HCAMFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
