"""What a speech region's voice sounds like apart from the speaker encoder, for `recording.find_turns`' speaker count:
its MFCC frames, their Gaussian statistics (BIC of a cut of the speakers' tree) and GMM supervectors (a second view
of look-alike voices)."""
from __future__ import annotations

import numpy as np

from hcam.modeling_hcam.feature_extraction_hcam import SAMPLING_RATE

# c0 (loudness) and c1..c19 of 20, from 40 mel bands in 25 ms windows every 10 ms.
MFCC_COEFFICIENTS = 20
# Supervectors: a diagonal GMM of this many components, fitted on at most SUPERVECTOR_FIT_FRAMES of the recording's
# frames, each region's means MAP-adapted with this relevance factor (chosen with recording.SUPERVECTOR_* on seeds
# 100-102 of bench/make_recordings.py).
SUPERVECTOR_COMPONENTS = 16
SUPERVECTOR_RELEVANCE = 16.0
SUPERVECTOR_FIT_FRAMES = 20000

_MFCC = {}


def mfcc_statistics(frames) -> np.ndarray:
    """One speech region's `mfcc_frames` as a Gaussian's sufficient statistics: one row [frames, sum (19), sum of outer
    products (19 x 19)], float64; statistics of regions add up."""
    frames = np.asarray(frames, dtype=np.float64)
    return np.concatenate([[len(frames)], frames.sum(axis=0), (frames.T @ frames).ravel()])


def mfcc_frames(audio) -> np.ndarray:
    """One speech region's MFCC frames, c1..c19 (25 ms windows every 10 ms): (frames, 19), float32."""
    import torch

    if "transform" not in _MFCC:
        import torchaudio

        _MFCC["transform"] = torchaudio.transforms.MFCC(
            sample_rate=SAMPLING_RATE, n_mfcc=MFCC_COEFFICIENTS,
            melkwargs={"n_fft": 400, "hop_length": 160, "n_mels": 40})
    with torch.no_grad():
        frames = _MFCC["transform"](torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)))[1:]
    return frames.T.numpy().astype(np.float32)


def mfcc_supervectors(frames, components: int = SUPERVECTOR_COMPONENTS, relevance: float = SUPERVECTOR_RELEVANCE,
                      seed: int = 0) -> np.ndarray:
    """Each region's GMM supervector (rows, unit-norm): `frames` (one `mfcc_frames` array per region) standardised
    over the recording; a diagonal GMM of `components` (initialised by `seed`) fitted on at most
    SUPERVECTOR_FIT_FRAMES of them; each region's component means MAP-adapted to its frames (relevance factor
    `relevance`), less the GMM's, scaled by the square root of the component weight over the standard deviation (the
    GMM supervector kernel); less the mean over regions."""
    from sklearn.mixture import GaussianMixture

    # the recording's frames are never joined into one array (an hour holds 360,000 of them)
    total = sum(len(region) for region in frames)
    centre = sum(np.asarray(region, dtype=np.float64).sum(axis=0) for region in frames) / total
    scale = np.sqrt(sum(((np.asarray(region, dtype=np.float64) - centre) ** 2).sum(axis=0) for region in frames)
                    / total) + 1e-6
    rng = np.random.default_rng(seed)
    if total <= SUPERVECTOR_FIT_FRAMES:
        fit = np.concatenate(frames).astype(np.float64)
    else:
        chosen = np.sort(rng.choice(total, SUPERVECTOR_FIT_FRAMES, replace=False))
        offsets = np.cumsum([0] + [len(region) for region in frames])
        owner = np.searchsorted(offsets, chosen, side="right") - 1
        fit = np.stack([frames[r][i - offsets[r]] for r, i in zip(owner, chosen)]).astype(np.float64)
    gmm = GaussianMixture(min(components, len(fit)), covariance_type="diag", random_state=seed, max_iter=50).fit(
        (fit - centre) / scale)
    vectors = []
    for region in frames:
        x = (np.asarray(region, dtype=np.float64) - centre) / scale
        posteriors = gmm.predict_proba(x)
        counts = posteriors.sum(axis=0)
        expected = posteriors.T @ x / np.maximum(counts[:, None], 1e-9)
        alpha = (counts / (counts + relevance))[:, None]
        shift = alpha * (expected - gmm.means_)
        vectors.append((np.sqrt(gmm.weights_)[:, None] * shift / np.sqrt(gmm.covariances_)).ravel())
    vectors = np.stack(vectors)
    vectors -= vectors.mean(axis=0)
    return vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-9)


def gaussian_log_likelihood(statistics) -> float:
    """Log-likelihood (less its constant) of the frames behind summed `mfcc_statistics` under their own
    full-covariance Gaussian (lightly regularised)."""
    n = statistics[0]
    d = int(round((np.sqrt(1 + 4 * (len(statistics) - 1)) - 1) / 2))
    mean = statistics[1: 1 + d] / n
    covariance = statistics[1 + d:].reshape(d, d) / n - np.outer(mean, mean)
    covariance += 1e-6 * np.eye(d) + 1e-3 * np.diag(np.diag(covariance))
    return -0.5 * n * float(np.linalg.slogdet(covariance)[1])
