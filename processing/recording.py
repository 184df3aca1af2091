"""Turns in a raw recording of a conversation: when each one starts and ends, and who speaks.

A call or a meeting recorded as one file has no segments table; this module finds one, offline, with two packages
that ship their weights (``pip install "hcam[recordings]"``):

- voice activity: silero-vad (its wheel carries the model) marks where someone speaks;
- speakers: resemblyzer's speaker encoder (its wheel carries ``pretrained.pt``, and reads 16 kHz) gives a voice
  embedding every ``EMBEDDING_HOP`` seconds of speech (1.6 s windows); each speech region's mean embedding is
  clustered (agglomerative, cosine, average linkage) into `num_speakers` voices, or, when it is not given, into the
  cut of that tree whose clusters best fit one Gaussian each of their MFCC frames (BIC: a second view of the voices,
  `speaker_tree_cut`), and a region whose own embeddings move to another voice is cut there (two speakers with no
  pause between them). A stereo call with one speaker per channel (``channels_are_speakers``) needs no clustering:
  each channel is one speaker.

Speech of one speaker is one turn as long as its pauses are shorter than `min_pause` seconds; a turn longer than
`max_turn_seconds` is cut at its longest pause. A change of speaker always starts a new turn.

The recording is read `window_seconds` at a time (voice activity and embeddings per window, only the times and the
embeddings kept), so an hour of audio never sits in memory at once; `turn_audio` gives each turn as a span of the
file that the HCAM pipeline reads only when it needs that turn.

    from hcam.processing.recording import find_turns
    turns = find_turns("call.wav", num_speakers=2)   # [{"start": 0.41, "end": 3.2, "speaker": "S1"}, ...]

`hcam-predict --recording call.wav` (no --segments) and `hcam.trainer.recordings.predict_recording` run this, then ASR
and HCAM on the turns.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager

import numpy as np

from hcam.modeling_hcam.feature_extraction_hcam import SAMPLING_RATE
from .voice_features import gaussian_log_likelihood, mfcc_frames, mfcc_statistics, mfcc_supervectors

DEFAULT_MIN_PAUSE = 1.0
DEFAULT_MAX_TURN_SECONDS = 30.0
DEFAULT_WINDOW_SECONDS = 120.0
MAX_SPEAKERS = 8
# Voice activity: silero-vad's probability threshold and its shortest speech and silence (short silences are kept so
# that two speakers a breath apart are told apart; `min_pause` then joins one speaker's pauses back into a turn).
VAD_THRESHOLD = 0.5
VAD_MIN_SPEECH_MS = 200
VAD_MIN_SILENCE_MS = 150
VAD_SPEECH_PAD_MS = 30
# Speaker embeddings: one every EMBEDDING_HOP seconds of speech, each from resemblyzer's 1.6 s window.
EMBEDDING_HOP = 0.5
# With the number of speakers given, clusters are merged while their average cosine distance is below this, then down
# to the number (without MFCC statistics, estimate_speakers also calls a recording whose two most distinct groups of
# voices are closer than this one speaker; chosen on bench/make_recordings.py --seed 100); a cluster with less than
# MIN_SPEAKER_SHARE of the speech is folded into the nearest one (a cough, an overlap).
SPEAKER_DISTANCE_THRESHOLD = 0.33
MIN_SPEAKER_SHARE = 0.03
# The number of speakers, when not given: the cut of the regions' average-linkage tree (1 to MAX_SPEAKERS clusters)
# whose clusters are best fitted by one full-covariance Gaussian each of their MFCC frames (c1..c19 of
# voice_features.mfcc_frames, 25 ms windows every 10 ms), by BIC with SPEAKER_BIC_PENALTY times BIC's usual penalty per
# cluster (a second view of the voices, beside the speaker encoder trained on people: it tells more of the demo
# corpus's espeak-ng voices apart where the embeddings alone merge them). Chosen on bench/make_recordings.py --seed
# 100 and 101 (flite and espeak-ng voices, recordings and each voice heard alone; bench/bench_diarization.py), seeds
# the benchmark does not score; 3.0 splits some espeak-ng voices heard alone, 4.0 merges some flite speakers.
SPEAKER_BIC_PENALTY = 3.5
# A second view of the voices for the count: each region's GMM supervector (its MFCC frames MAP-adapted from a
# diagonal GMM fitted on the recording's own frames: voice_features.mfcc_supervectors), joined with its embedding
# (the supervector weighing SUPERVECTOR_WEIGHT of the vector); that tree is cut by the same BIC with
# SUPERVECTOR_BIC_PENALTY, once per GMM of SUPERVECTOR_SEEDS (one GMM's fit is a draw: the count varies with it), and
# when the median count is above the first tree's, the cut of the tree of the embeddings joined with all the
# supervectors at that count is taken (espeak-ng's look-alike voices, which the embeddings' tree merges, are told apart
# by the supervectors). Chosen on seeds 100, 101 and 102 of bench/make_recordings.py (bench/bench_diarization.py):
# penalties 3.0-4.0 or a single GMM split some voices heard alone, depending on the GMM's seed.
SUPERVECTOR_WEIGHT = 0.8
SUPERVECTOR_BIC_PENALTY = 4.5
SUPERVECTOR_SEEDS = (0, 1, 2, 3, 4)
# Clustering reads at most this many embeddings (a random subset of a longer recording; the rest go to the nearest
# cluster), so that its distance matrix stays small for an hour of speech.
MAX_CLUSTERED_EMBEDDINGS = 3000
MAX_ESTIMATE_EMBEDDINGS = 1000
# channels_are_speakers: speech on a channel more than this many dB below the loudest channel is the other party
# leaking into this one's microphone, not a turn.
CROSSTALK_DB = 10.0
# Bits of one speaker shorter than this inside a speech region go to the speaker around them.
MIN_SPEAKER_SEGMENT = 0.6


class RecordingError(ValueError):
    """A recording that cannot be cut into turns (not audio, empty, silent, ...); the message says what to do."""


class RecordingUnavailableError(ImportError):
    """A package this module needs is not installed; the message says what to install."""


def _silero():
    try:
        from silero_vad import get_speech_timestamps, load_silero_vad
    except ImportError as error:
        raise RecordingUnavailableError(
            'finding turns in a recording needs silero-vad and resemblyzer: pip install "hcam[recordings]"') from error
    return load_silero_vad(), get_speech_timestamps


def _voice_encoder():
    try:
        import warnings

        with warnings.catch_warnings():  # resemblyzer's webrtcvad import warns about pkg_resources
            warnings.simplefilter("ignore")
            from resemblyzer import VoiceEncoder
    except ImportError as error:
        raise RecordingUnavailableError(
            'telling speakers apart needs resemblyzer: pip install "hcam[recordings]" (or give --num_speakers 1, or '
            "--channels_are_speakers for a stereo call)") from error
    return VoiceEncoder("cpu", verbose=False)


# ------------------------------------------------------------------------------------------------------ reading
@contextmanager
def _readable(recording):
    """(path soundfile can read, its name for messages). Formats libsndfile cannot read (mp4, m4a, ...) are decoded
    to a temporary 16 kHz WAV with the ffmpeg that imageio-ffmpeg ships, all channels kept."""
    import soundfile as sf

    path = os.fspath(recording)
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise RecordingError(f"recording not found: {path}")
    try:
        sf.info(path)
        readable = True
    except (RuntimeError, getattr(sf, "SoundFileError", RuntimeError)):
        readable = False
    if readable:
        yield path, name
        return
    import subprocess

    try:
        import imageio_ffmpeg
    except ImportError as error:
        raise RecordingError(f"{name}: not a format soundfile reads, and imageio-ffmpeg is not installed to decode it; "
                             "convert it to WAV or FLAC") from error
    with tempfile.TemporaryDirectory(prefix="hcam-recording-") as folder:
        target = os.path.join(folder, "decoded.wav")
        result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", path, "-vn",
                                 "-ar", str(SAMPLING_RATE), "-c:a", "pcm_s16le", target], capture_output=True)
        if result.returncode != 0 or not os.path.isfile(target):
            lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
            reason = lines[-1] if lines else f"ffmpeg exit code {result.returncode}"
            raise RecordingError(f"{name} is not an audio file that can be read ({reason}): give a WAV, FLAC, OGG, MP3 "
                                 "or a video/audio file with a sound track")
        yield target, name


def _check_array(recording, sampling_rate):
    array = np.asarray(recording)
    if sampling_rate is None:
        raise RecordingError("a recording given as an array needs its sampling_rate")
    if array.ndim not in (1, 2) or array.size == 0:
        raise RecordingError(f"a recording array must be 1-D (mono) or 2-D (samples, channels) and not empty; got "
                             f"shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise RecordingError("the recording array holds NaN or infinite values")
    return array if array.ndim == 2 else array[:, None]


def _to_rate(block: np.ndarray, rate: int) -> np.ndarray:
    """(samples, channels) at `rate` -> (channels, samples) float32 at 16 kHz (the feature extractor's resampler)."""
    from hcam.modeling_hcam.feature_extraction_hcam import _resample

    channels = np.ascontiguousarray(block.T, dtype=np.float32)
    if rate != SAMPLING_RATE:
        channels = np.stack([_resample(c, int(rate), SAMPLING_RATE) for c in channels])
    return channels


class _Source:
    """A recording (path or array) read window by window at 16 kHz: `blocks()` yields (start seconds, (channels,
    samples)); `read(start, end)` one span, mono (or one channel)."""

    def __init__(self, recording, sampling_rate=None):
        self._stack = None
        if isinstance(recording, (str, os.PathLike)):
            import contextlib

            import soundfile as sf

            self._stack = contextlib.ExitStack()
            self.path, self.name = self._stack.enter_context(_readable(recording))
            info = sf.info(self.path)
            self.rate, self.channels, self.frames, self.array = info.samplerate, info.channels, info.frames, None
        else:
            self.array = _check_array(recording, sampling_rate)
            self.path, self.name = None, "the recording"
            self.rate, self.frames, self.channels = int(sampling_rate), self.array.shape[0], self.array.shape[1]
        self.duration = self.frames / self.rate if self.rate else 0.0
        if self.frames == 0 or self.duration < 0.05:
            self.close()
            raise RecordingError(f"{self.name} is empty ({self.duration:.2f} s of audio): nothing to cut into turns")

    def close(self):
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def _frames(self, first, last):
        if self.array is not None:
            return self.array[first:last]
        import soundfile as sf

        data, _ = sf.read(self.path, start=first, stop=last, dtype="float32", always_2d=True)
        if not np.isfinite(data).all():
            raise RecordingError(f"{self.name}: NaN or infinite samples between {first / self.rate:.1f} s and "
                                 f"{last / self.rate:.1f} s")
        return data

    def blocks(self, seconds):
        step = max(1, int(seconds * self.rate))
        for first in range(0, self.frames, step):
            yield first / self.rate, _to_rate(self._frames(first, min(self.frames, first + step)), self.rate)

    def read(self, start, end, channel=None, mix=True):
        """[start, end] seconds at 16 kHz: the mono mix, one `channel`, or (mix=False) every channel."""
        first, last = int(round(start * self.rate)), min(self.frames, int(round(end * self.rate)))
        channels = _to_rate(self._frames(first, last), self.rate)
        if channel is not None:
            return channels[channel]
        return channels.mean(axis=0) if mix else channels


# ------------------------------------------------------------------------------------------------ voice activity
def _speech_regions(waveform, vad, get_speech_timestamps):
    """[(start, end)] in seconds of the speech in a 16 kHz mono array."""
    import torch

    if waveform.size < SAMPLING_RATE // 10:
        return []
    spans = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(waveform)), vad, threshold=VAD_THRESHOLD,
                                  sampling_rate=SAMPLING_RATE, min_speech_duration_ms=VAD_MIN_SPEECH_MS,
                                  min_silence_duration_ms=VAD_MIN_SILENCE_MS, speech_pad_ms=VAD_SPEECH_PAD_MS)
    return [(span["start"] / SAMPLING_RATE, span["end"] / SAMPLING_RATE) for span in spans]


def _stream_regions(source, window_seconds, channel_count, vad, get_speech_timestamps, progress=None):
    """Speech regions of each channel (or of the mono mix, channel_count=1), window by window: yields (channel, start,
    end, audio) with absolute times. A region still open at a window's end is carried into the next window (its
    audio is kept until it ends, or until it is `window_seconds` long, when it is cut)."""
    carries = [None] * channel_count  # per channel: (start seconds, audio) not yet closed
    for offset, block in source.blocks(window_seconds):
        streams = [block.mean(axis=0)] if channel_count == 1 else list(block)
        is_last = offset + block.shape[1] / SAMPLING_RATE >= source.duration - 1e-6
        for channel, audio in enumerate(streams):
            start = offset
            if carries[channel] is not None:
                start, previous = carries[channel]
                audio = np.concatenate([previous, audio])
                carries[channel] = None
            regions = _speech_regions(audio, vad, get_speech_timestamps)
            end_of_audio = len(audio) / SAMPLING_RATE
            for index, (first, last) in enumerate(regions):
                open_at_end = last >= end_of_audio - VAD_MIN_SILENCE_MS / 1000 - 0.05
                if open_at_end and not is_last and index == len(regions) - 1 and end_of_audio - first < window_seconds:
                    carries[channel] = (start + first, audio[int(first * SAMPLING_RATE):])
                    break
                yield channel, start + first, start + last, audio[int(first * SAMPLING_RATE): int(last * SAMPLING_RATE)]
        if progress is not None:
            progress(block.shape[1] / SAMPLING_RATE)


def _dominant(source, channel, start, end):
    """Whether `channel` is within CROSSTALK_DB of the loudest channel over [start, end] (its own speech, not the
    other party's voice leaking into its microphone, which is typically 20 dB or more quieter)."""
    levels = np.sqrt(np.mean(source.read(start, end, channel=None, mix=False) ** 2, axis=1))
    return bool(levels[channel] >= levels.max() * 10 ** (-CROSSTALK_DB / 20))


# -------------------------------------------------------------------------------------------------- speakers
def _region_embeddings(encoder, audio):
    """Speaker embeddings of one speech region: [(centre seconds within the region, 256-d unit vector)]."""
    _, partials, slices = encoder.embed_utterance(audio.astype(np.float32), return_partials=True,
                                                 rate=1.0 / EMBEDDING_HOP, min_coverage=0.5)
    duration = len(audio) / SAMPLING_RATE
    centres = [min(duration, (s.start + s.stop) / 2 / SAMPLING_RATE) for s in slices]
    if len(centres) == 1:
        centres = [duration / 2]
    return list(zip(centres, partials))


def cluster_speakers(embeddings: np.ndarray, weights=None, num_speakers: int | None = None,
                     max_speakers: int = MAX_SPEAKERS, distance_threshold: float = SPEAKER_DISTANCE_THRESHOLD,
                     seed: int = 0, statistics=None, supervectors=None) -> np.ndarray:
    """Speaker index (0 = the one who speaks first) of each unit-norm embedding (rows), `weights` being the seconds
    of speech behind each.

    Without `num_speakers`: with `statistics` (each row's MFCC frame statistics, `mfcc_statistics`), the clusters
    are the cut of the average-linkage tree that `speaker_tree_cut` chooses (with `supervectors`, a list of
    `mfcc_supervectors` arrays, one per GMM, a second tree's when the embeddings joined with them find more
    speakers: `_second_view`); without them, `estimate_speakers` gives the count. Agglomerative clustering (cosine,
    average linkage) merges clusters while their average distance is below `distance_threshold`; a cluster with less
    than MIN_SPEAKER_SHARE of the speech is folded into the nearest one (a cough, an overlap); then the nearest
    clusters are merged down to the count (or, when fewer were found, the clustering is redone with that count).
    """
    from sklearn.cluster import AgglomerativeClustering

    n = len(embeddings)
    weights = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    if n == 0:
        return np.zeros(0, dtype=int)
    if num_speakers == 1 or n == 1:
        return np.zeros(n, dtype=int)
    fit = np.arange(n)
    if n > MAX_CLUSTERED_EMBEDDINGS:
        fit = np.sort(np.random.default_rng(seed).choice(n, MAX_CLUSTERED_EMBEDDINGS, replace=False))
    if num_speakers is None:  # on at most MAX_ESTIMATE_EMBEDDINGS of them: 7 clusterings (and silhouettes)
        sample = fit if len(fit) <= MAX_ESTIMATE_EMBEDDINGS else np.sort(
            np.random.default_rng(seed).choice(fit, MAX_ESTIMATE_EMBEDDINGS, replace=False))
        if statistics is not None:
            labels = _fold_small(embeddings, speaker_tree_cut(embeddings, statistics, max_speakers, sample=sample),
                                 weights)
            if supervectors is not None:
                labels = _second_view(embeddings, weights, statistics, supervectors, labels, max_speakers, sample)
            return _by_first_appearance(labels)
        num_speakers = estimate_speakers(embeddings[sample], max_speakers, distance_threshold)
        if num_speakers == 1:
            return np.zeros(n, dtype=int)
    fitted = AgglomerativeClustering(n_clusters=None, distance_threshold=distance_threshold, metric="cosine",
                                     linkage="average").fit_predict(embeddings[fit])
    labels = _nearest_centroid(embeddings, fitted, fit)
    target = num_speakers
    while True:
        labels = _fold_small(embeddings, labels, weights)
        present = np.unique(labels)
        if len(present) <= target:
            break
        centroids = _centroids(embeddings, labels, weights)  # too many: merge the two nearest clusters
        keys = list(centroids)
        matrix = np.stack([centroids[k] for k in keys])
        distances = 1 - matrix @ matrix.T + 2 * np.eye(len(keys))
        a, b = np.unravel_index(np.argmin(distances), distances.shape)
        labels[labels == keys[b]] = keys[a]
    if len(np.unique(labels)) < target <= n:
        fitted = AgglomerativeClustering(n_clusters=min(target, len(fit)), metric="cosine",
                                         linkage="average").fit_predict(embeddings[fit])
        labels = _nearest_centroid(embeddings, fitted, fit)
    return _by_first_appearance(labels)


def _joined(embeddings, supervectors):
    """Unit-norm rows of the embeddings joined with the supervectors (SUPERVECTOR_WEIGHT of the vector)."""
    joined = np.concatenate([np.sqrt(1 - SUPERVECTOR_WEIGHT) * embeddings,
                             np.sqrt(SUPERVECTOR_WEIGHT) * np.asarray(supervectors)], axis=1)
    return joined / (np.linalg.norm(joined, axis=1, keepdims=True) + 1e-9)


def _second_view(embeddings, weights, statistics, supervectors, labels, max_speakers, sample):
    """`labels` (the embeddings' tree cut), or, when the median count of the joined trees' BIC cuts (one per GMM's
    supervectors in the list `supervectors`) is higher, the cut at that count of the tree of the embeddings joined
    with all of them."""
    from sklearn.cluster import AgglomerativeClustering

    counts = [len(np.unique(_fold_small(embeddings, speaker_tree_cut(
        _joined(embeddings, vectors), statistics, max_speakers, SUPERVECTOR_BIC_PENALTY, sample=sample), weights)))
              for vectors in supervectors]
    count = int(np.median(counts))
    if count <= len(np.unique(labels)) or count >= len(sample):
        return labels
    everything = _joined(embeddings, np.concatenate(supervectors, axis=1) / np.sqrt(len(supervectors)))
    fitted = AgglomerativeClustering(n_clusters=count, metric="cosine", linkage="average").fit_predict(
        everything[sample])
    return _fold_small(embeddings, _nearest_centroid(everything, fitted, sample), weights)


def _fold_small(embeddings, labels, weights):
    """Clusters with less than MIN_SPEAKER_SHARE of the speech (`weights`) go, smallest first, to the nearest centroid
    of the others."""
    while True:
        present = np.unique(labels)
        shares = {k: weights[labels == k].sum() / weights.sum() for k in present}
        small = [k for k in present if shares[k] < MIN_SPEAKER_SHARE]
        if len(present) <= 1 or not small:
            return labels
        drop = min(small, key=lambda k: shares[k])
        keep = np.flatnonzero(labels != drop)
        labels = _nearest_centroid(embeddings, labels[keep], keep)


def speaker_tree_cut(embeddings: np.ndarray, statistics: np.ndarray, max_speakers: int = MAX_SPEAKERS,
                     penalty: float = SPEAKER_BIC_PENALTY, sample=None) -> np.ndarray:
    """Speaker labels of unit-norm embeddings (one per speech region): the cut of their average-linkage cosine tree
    into 1 to `max_speakers` clusters with the best BIC of one full-covariance Gaussian per cluster over the regions'
    MFCC frames (`statistics`, one `mfcc_statistics` row per embedding), each cluster costing `penalty` times BIC's
    penalty for one Gaussian. The tree is built on the rows `sample` (all by default), the other rows going to the
    nearest cluster centroid."""
    from sklearn.cluster import AgglomerativeClustering

    n = len(embeddings)
    sample = np.arange(n) if sample is None else np.asarray(sample)
    statistics = np.asarray(statistics, dtype=np.float64)
    if len(sample) < 3:
        return np.zeros(n, dtype=int)
    d = int(round((np.sqrt(1 + 4 * (statistics.shape[1] - 1)) - 1) / 2))
    cluster_penalty = penalty * 0.5 * (d + d * (d + 1) / 2) * np.log(statistics[:, 0].sum())
    best, best_score = np.zeros(n, dtype=int), gaussian_log_likelihood(statistics.sum(axis=0)) - cluster_penalty
    for k in range(2, min(max_speakers, len(sample) - 1) + 1):
        fitted = AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit_predict(
            embeddings[sample])
        labels = _nearest_centroid(embeddings, fitted, sample)
        score = sum(gaussian_log_likelihood(statistics[labels == c].sum(axis=0)) for c in np.unique(labels))
        score -= cluster_penalty * len(np.unique(labels))
        if score > best_score:
            best, best_score = labels, score
    return best


def _by_first_appearance(labels) -> np.ndarray:
    """Labels renumbered 0, 1, ... in the order they first appear."""
    order = {}
    for label in labels:
        order.setdefault(int(label), len(order))
    return np.array([order[int(label)] for label in labels], dtype=int)


def estimate_speakers(embeddings: np.ndarray, max_speakers: int = MAX_SPEAKERS,
                      distance_threshold: float = SPEAKER_DISTANCE_THRESHOLD) -> int:
    """How many voices the unit-norm embeddings hold: 1 when even the two most distinct groups of the average-linkage
    tree are closer than `distance_threshold` (average cosine distance), else the cut of the tree into 2 to
    `max_speakers` clusters with the best silhouette (chosen on bench/make_recordings.py --seed 100: the right count
    for all five recordings of flite's voices, where a fixed distance threshold got three or four)."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import silhouette_score

    n = len(embeddings)
    if n < 3:
        return 1
    two = AgglomerativeClustering(n_clusters=2, metric="cosine", linkage="average").fit_predict(embeddings)
    if float(np.mean(1 - embeddings[two == 0] @ embeddings[two == 1].T)) < distance_threshold:
        return 1
    best, best_score = 2, -1.0
    for k in range(2, min(max_speakers, n - 1) + 1):
        labels = two if k == 2 else AgglomerativeClustering(n_clusters=k, metric="cosine",
                                                            linkage="average").fit_predict(embeddings)
        score = silhouette_score(embeddings, labels, metric="cosine")
        if score > best_score:
            best, best_score = k, score
    return best


def _centroids(embeddings, labels, weights=None):
    """{label: unit-norm (weighted) mean embedding}."""
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=float)
    centroids = {}
    for k in np.unique(labels):
        rows = labels == k
        mean = (embeddings[rows] * weights[rows, None]).sum(axis=0)
        centroids[k] = mean / (np.linalg.norm(mean) + 1e-9)
    return centroids


def _nearest_centroid(embeddings, fitted_labels, fitted_rows):
    """Labels of every row: its fitted label where it was fitted, else the nearest cluster centroid's (cosine)."""
    keys = np.unique(fitted_labels)
    centroids = np.stack([embeddings[fitted_rows[fitted_labels == k]].mean(axis=0) for k in keys])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-9
    labels = keys[np.argmax(embeddings @ centroids.T, axis=1)]
    labels[fitted_rows] = fitted_labels
    return labels


def _smooth(labels):
    """Majority of each label and its two neighbours (a lone embedding of another speaker inside a run is noise)."""
    labels = list(labels)
    if len(labels) < 3:
        return labels
    smoothed = labels[:]
    for i in range(1, len(labels) - 1):
        if labels[i - 1] == labels[i + 1] != labels[i]:
            smoothed[i] = labels[i - 1]
    return smoothed


# ------------------------------------------------------------------------------------------------------ turns
def _pieces(region, centres, labels):
    """Cut one speech region (start, end) where its embeddings' speaker changes: [(start, end, speaker)]; a piece
    shorter than MIN_SPEAKER_SEGMENT joins its longer neighbour."""
    start, end = region
    labels = _smooth(labels)
    pieces = []
    for index, label in enumerate(labels):
        if pieces and pieces[-1][2] == label:
            continue
        cut = start if not pieces else start + (centres[index - 1] + centres[index]) / 2
        if pieces:
            pieces[-1][1] = cut
        pieces.append([cut, end, label])
    changed = True
    while changed and len(pieces) > 1:
        changed = False
        for i, (a, b, _) in enumerate(pieces):
            if b - a < MIN_SPEAKER_SEGMENT:
                neighbour = i - 1 if i == len(pieces) - 1 or (i > 0 and pieces[i - 1][1] - pieces[i - 1][0] >=
                                                                pieces[i + 1][1] - pieces[i + 1][0]) else i + 1
                lo, hi = sorted((i, neighbour))
                pieces[lo:hi + 1] = [[pieces[lo][0], pieces[hi][1], pieces[neighbour][2]]]
                changed = True
                break
    return [tuple(p) for p in pieces]


def _split_long(turn_pieces, max_turn_seconds):
    """One speaker's pieces (start, end) -> turns no longer than `max_turn_seconds`, cut at the longest pauses (a
    single piece longer than that is cut evenly)."""
    start, end = turn_pieces[0][0], turn_pieces[-1][1]
    if end - start <= max_turn_seconds:
        return [(start, end)]
    if len(turn_pieces) == 1:
        parts = int(np.ceil((end - start) / max_turn_seconds))
        edges = np.linspace(start, end, parts + 1)
        return list(zip(edges[:-1], edges[1:]))
    gaps = [turn_pieces[i + 1][0] - turn_pieces[i][1] for i in range(len(turn_pieces) - 1)]
    cut = int(np.argmax(gaps)) + 1
    return _split_long(turn_pieces[:cut], max_turn_seconds) + _split_long(turn_pieces[cut:], max_turn_seconds)


def _turns_from_pieces(pieces, min_pause, max_turn_seconds):
    """Speaker pieces (start, end, speaker), in time order -> turns: one speaker's pieces whose pauses are shorter
    than `min_pause`, with no other speaker in between."""
    pieces = sorted(pieces)
    groups = []
    for start, end, speaker in pieces:
        last = groups[-1] if groups else None
        if last is not None and last[0] == speaker and start - last[1][-1][1] < min_pause:
            last[1].append((start, end))
        else:
            groups.append((speaker, [(start, end)]))
    turns = []
    for speaker, spans in groups:
        for start, end in _split_long(spans, max_turn_seconds):
            turns.append({"start": round(float(start), 3), "end": round(float(end), 3), "speaker": f"S{speaker + 1}"})
    return turns


def _speaker_pieces(regions, centres, partials, num_speakers, region_vectors=None, statistics=None, frames=None):
    """Speech regions -> (start, end, speaker) pieces: each region's mean embedding (or its row of `region_vectors`,
    unit-norm) is clustered (a region is mostly one speaker: the voice-activity detector cuts at pauses; `statistics`,
    the regions' `mfcc_statistics`, choose the count when it is not given, with `frames`, their `mfcc_frames`, for
    the supervectors' second tree), then a region long enough for 3 or more
    embeddings is cut where its own embeddings' nearest speaker changes (two speakers without a pause between them)."""
    partials = np.asarray(partials)
    bounds = np.cumsum([0] + [len(c) for c in centres])
    means = np.stack([partials[bounds[i]: bounds[i + 1]].mean(axis=0) for i in range(len(regions))])
    means /= np.linalg.norm(means, axis=1, keepdims=True) + 1e-9
    durations = np.array([end - start for _, start, end in regions])
    supervectors = None
    if statistics is not None and frames is not None and len(regions) >= 3:
        supervectors = [mfcc_supervectors(frames, seed=seed) for seed in SUPERVECTOR_SEEDS]
    labels = cluster_speakers(means if region_vectors is None else region_vectors, durations, num_speakers,
                              statistics=statistics, supervectors=supervectors)
    centroids = _centroids(means, labels, durations)
    keys = list(centroids)
    matrix = np.stack([centroids[k] for k in keys])
    pieces = []
    for i, (_, start, end) in enumerate(regions):
        if len(centres[i]) < 3 or len(keys) < 2:
            pieces.append((start, end, int(labels[i])))
            continue
        nearest = [keys[k] for k in np.argmax(partials[bounds[i]: bounds[i + 1]] @ matrix.T, axis=1)]
        pieces.extend(_pieces((start, end), centres[i], [int(k) for k in nearest]))
    order = {}  # speakers numbered by first appearance in time
    for _, _, speaker in sorted(pieces):
        order.setdefault(speaker, len(order))
    return [(a, b, order[k]) for a, b, k in pieces]


def _check_options(min_pause, max_turn_seconds, num_speakers, window_seconds, channels_are_speakers):
    if min_pause < 0:
        raise RecordingError(f"min_pause must be >= 0 seconds, got {min_pause}")
    if max_turn_seconds <= 1:
        raise RecordingError(f"max_turn_seconds must be more than 1 second, got {max_turn_seconds}")
    if num_speakers is not None and not 1 <= num_speakers <= 50:
        raise RecordingError(f"num_speakers must be between 1 and 50, got {num_speakers}")
    if window_seconds < 10:
        raise RecordingError(f"window_seconds must be at least 10, got {window_seconds}")
    if channels_are_speakers and num_speakers is not None:
        raise RecordingError("channels_are_speakers gives one speaker per channel: leave num_speakers out")


def find_turns(recording, sampling_rate: int | None = None, *, min_pause: float = DEFAULT_MIN_PAUSE,
               max_turn_seconds: float = DEFAULT_MAX_TURN_SECONDS, num_speakers: int | None = None,
               channels_are_speakers: bool = False, window_seconds: float = DEFAULT_WINDOW_SECONDS,
               progress=None) -> list[dict]:
    """The turns of a recorded conversation: `[{"start": s, "end": s, "speaker": "S1"}, ...]` in time order.

    Args:
        recording: an audio file (anything soundfile reads, or ffmpeg via imageio-ffmpeg: mp4, m4a, ...), or an array
            of samples (1-D mono, or 2-D (samples, channels)) with its `sampling_rate`.
        min_pause: a speaker's pause at least this long (seconds) ends their turn; shorter pauses stay inside it.
        max_turn_seconds: longer turns are cut at their longest pause.
        num_speakers: how many people speak; estimated from the voices when not given.
        channels_are_speakers: each channel is one speaker (a stereo call recording); no clustering.
        window_seconds: audio read and analysed at a time (memory does not grow with the recording).
        progress: called with the seconds of recording just analysed.

    Raises:
        RecordingError: not audio, empty, no speech found, one channel with channels_are_speakers, bad options.
        RecordingUnavailableError: silero-vad or resemblyzer is missing (pip install "hcam[recordings]").
    """
    _check_options(min_pause, max_turn_seconds, num_speakers, window_seconds, channels_are_speakers)
    vad, get_speech_timestamps = _silero()
    source = _Source(recording, sampling_rate)
    try:
        if channels_are_speakers and source.channels < 2:
            raise RecordingError(f"{source.name} has {source.channels} channel: channels_are_speakers needs one "
                                 "channel per speaker (a stereo call); leave it out to tell voices apart")
        channel_count = source.channels if channels_are_speakers else 1
        encoder = None if channels_are_speakers or num_speakers == 1 else _voice_encoder()
        regions, centres, embeddings, frames = [], [], [], []
        for channel, start, end, audio in _stream_regions(source, window_seconds, channel_count, vad,
                                                          get_speech_timestamps, progress):
            regions.append((channel, start, end))
            if encoder is not None:
                pairs = _region_embeddings(encoder, audio)
                centres.append([c for c, _ in pairs])
                embeddings.extend(e for _, e in pairs)
                if num_speakers is None:
                    frames.append(mfcc_frames(audio))
        if channel_count > 1:  # another channel's speech leaking into this one (echo, crosstalk) is not a turn
            keep = [_dominant(source, channel, start, end) for channel, start, end in regions]
            regions = [r for r, k in zip(regions, keep) if k]
        duration = source.duration
    finally:
        source.close()
    if not regions:
        raise RecordingError(f"no speech found in {source.name} ({duration:.1f} s): it is silent or holds no voice "
                             "that the voice-activity detector recognises")
    if encoder is None:  # one speaker per channel, or one speaker
        pieces = [(start, end, channel) for channel, start, end in regions]
    else:
        pieces = _speaker_pieces(regions, centres, embeddings, num_speakers,
                                 statistics=np.stack([mfcc_statistics(frames=f) for f in frames]) if frames else None,
                                 frames=frames or None)
    return _turns_from_pieces(pieces, min_pause, max_turn_seconds)


def turn_audio(recording, turns, sampling_rate: int | None = None, channels_are_speakers: bool = False,
               lazy: bool = True):
    """Each turn's audio, one at a time (a generator; the recording is not read whole). With
    `channels_are_speakers`, a turn of speaker "S<k>" is channel k alone.

    With `lazy` and a file soundfile reads (wav, flac, ogg, mp3), a turn is the span `{"path", "start", "end"[,
    "channel"]}` that the HCAM pipeline reads only when it encodes or transcribes that turn (so the turns of an hour
    never sit in memory together); otherwise (an array, a format decoded by ffmpeg, or `lazy=False`) it is the turn's
    16 kHz mono audio, read with the same reader (`load_audio_span`) when the recording is a readable file.
    """
    from hcam.modeling_hcam.feature_extraction_hcam import load_audio_span

    source = _Source(recording, sampling_rate)
    try:
        readable = source.path is not None and os.path.abspath(source.path) == os.path.abspath(os.fspath(recording))
        for turn in turns:
            channel = int(turn["speaker"][1:]) - 1 if channels_are_speakers else None
            if not readable:
                yield source.read(turn["start"], turn["end"], channel)
                continue
            span = {"path": os.path.abspath(source.path), "start": turn["start"], "end": turn["end"]}
            if channel is not None:
                span["channel"] = channel
            yield span if lazy else load_audio_span(span["path"], span["start"], span["end"],
                                                    SAMPLING_RATE, channel)
    finally:
        source.close()
