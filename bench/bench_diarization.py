"""Variants of the speaker step of `find_turns`, scored on recordings of bench/make_recordings.py: the diarization
error rate (pyannote.metrics, no collar, against the gold turns, as bench/bench_recordings.py scores it) and whether
the number of speakers came out right.

Voice activity and speaker embeddings (and each speech region's MFCC frames and their statistics, which find_turns'
count and several variants use) are computed once per recording (the same calls as find_turns, cached in --cache);
each variant then only clusters.
Besides each recording, each of its voices alone is scored (the speech regions of one gold speaker with at least
MIN_REGIONS_ALONE, against that speaker's turns): a variant that finds more speakers must not split one voice in two.
Its DER has a floor (the speech this voice spoke over another one is missing from its regions); what matters there
is the count.
Choose among variants on recordings of seeds the benchmark does not score (--seed 100 and 101), never on the scored
ones (--seed 0, 2). --timing FILE times the speaker step's parts on one recording (e.g. a 10-minute one).

    python bench/make_recordings.py --out /tmp/s100f --seed 100 --speakers 2 2 3 3 4 4 --turns 40
    python bench/make_recordings.py --out /tmp/s100e --seed 100 --speakers 2 2 3 3 4 4 --turns 40 --tts espeak
    python bench/bench_diarization.py --recordings /tmp/s100f /tmp/s100e --json diarization.json
    python bench/make_recordings.py --out /tmp/long --seed 1 --speakers 3 --minutes 10
    python bench/bench_diarization.py --timing /tmp/long/flite001_00_3spk.wav

Needs pip install "hcam[recordings,bench]" (make setup installs them).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
# a voice is also scored alone when it has at least this many speech regions in a recording
MIN_REGIONS_ALONE = 6
# the variant that runs find_turns' own speaker step
DEFAULT_VARIANT = ("default (MFCC BIC cut of the embeddings' tree, or of the supervectors' tree when it has more "
                   "speakers)")


def embeddings_of(path, cache):
    """(regions [(channel, start, end)], centres per region, embeddings) of a recording, as find_turns computes them."""
    from hcam.processing import recording as rec

    target = Path(cache) / (Path(path).stem + ".json") if cache else None
    frames_file = target.with_suffix(".frames.npz") if target is not None else None
    if target is not None and target.is_file() and frames_file.is_file():
        data = json.loads(target.read_text())
        if "mfcc" in data:
            stored = np.load(frames_file)
            frames = np.split(stored["frames"], stored["bounds"][1:-1])
            return ([tuple(r) for r in data["regions"]], data["centres"],
                    np.asarray(data["embeddings"], dtype=np.float32), np.asarray(data["mfcc"], dtype=np.float32),
                    frames)
    import torch
    import torchaudio

    mfcc = torchaudio.transforms.MFCC(sample_rate=rec.SAMPLING_RATE, n_mfcc=20,
                                      melkwargs={"n_fft": 400, "hop_length": 160, "n_mels": 40})
    vad, get_speech_timestamps = rec._silero()
    encoder = rec._voice_encoder()
    source = rec._Source(path)
    regions, centres, embeddings, spectra, frames = [], [], [], [], []
    try:
        for channel, start, end, audio in rec._stream_regions(source, rec.DEFAULT_WINDOW_SECONDS, 1, vad,
                                                              get_speech_timestamps):
            regions.append((channel, start, end))
            pairs = rec._region_embeddings(encoder, audio)
            centres.append([float(c) for c, _ in pairs])
            embeddings.extend(e for _, e in pairs)
            coefficients = mfcc(torch.from_numpy(np.ascontiguousarray(audio)))[1:]  # c1..c19 (c0 is loudness)
            spectra.append(torch.cat([coefficients.mean(dim=1), coefficients.std(dim=1)]).tolist())
            frames.append(coefficients.T.numpy().astype(np.float32))  # (frames, 19), 10 ms apart
    finally:
        source.close()
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"regions": regions, "centres": centres, "embeddings": embeddings.tolist(),
                                      "mfcc": spectra}))
        np.savez(frames_file, frames=np.concatenate(frames), bounds=np.cumsum([0] + [len(f) for f in frames]))
    return regions, centres, embeddings, np.asarray(spectra, dtype=np.float32), frames


def eigengap_count(embeddings, max_speakers=8):
    """Speaker count by the eigengap of a pruned cosine affinity (NME-SC, Park et al. 2019): for each pruning p (keep
    each row's p strongest links), the normalised Laplacian's largest eigengap g_p and its position k_p; the p with
    the smallest p / g_p gives k."""
    n = len(embeddings)
    if n < 4:
        return 1
    similarity = np.clip(embeddings @ embeddings.T, -1, 1)
    best, best_ratio = 1, np.inf
    for p in range(2, max(3, n // 4) + 1):
        affinity = np.zeros_like(similarity)
        keep = np.argsort(-similarity, axis=1)[:, :p]
        np.put_along_axis(affinity, keep, 1.0, axis=1)
        affinity = (affinity + affinity.T) / 2
        degree = affinity.sum(axis=1)
        laplacian = np.diag(degree) - affinity
        eigenvalues = np.sort(np.linalg.eigvalsh(laplacian))
        gaps = np.diff(eigenvalues[: max_speakers + 1])
        k = int(np.argmax(gaps)) + 1
        ratio = p / (gaps.max() + 1e-9)
        if ratio < best_ratio:
            best, best_ratio = k, ratio
    return best


def statistics_of(frames):
    """Each region's cached MFCC frames as recording.mfcc_statistics sums them (frames, sum, sum of outer products)."""
    return np.stack([np.concatenate([[len(f)], f.sum(axis=0), (f.T @ f).ravel()])
                     for f in (np.asarray(x, dtype=np.float64) for x in frames)])


def _delta_bic(a, b, penalty):
    """BIC of one Gaussian for both clusters' frames (summed statistics a, b) less that of one each: < 0 means one
    speaker."""
    from hcam.processing.voice_features import gaussian_log_likelihood

    d = int(round((np.sqrt(1 + 4 * (len(a) - 1)) - 1) / 2))
    return (gaussian_log_likelihood(a) + gaussian_log_likelihood(b) - gaussian_log_likelihood(a + b)
            - penalty * 0.5 * (d + d * (d + 1) / 2) * np.log(a[0] + b[0]))


def bic_merge(labels, statistics, penalty=1.0, down_to=None):
    """Clusters (a label per region) merged greedily, the pair with the lowest delta-BIC of the regions' MFCC frames
    first, while it is below 0 (classic BIC clustering, Chen & Gopalakrishnan 1998), or (`down_to`) until that many
    clusters are left."""
    labels = np.asarray(labels).copy()
    stats = {k: statistics[labels == k].sum(axis=0) for k in np.unique(labels)}
    keys = list(stats)
    scores = {(a, b): _delta_bic(stats[a], stats[b], penalty) for i, a in enumerate(keys) for b in keys[i + 1:]}
    while scores:
        (a, b), best = min(scores.items(), key=lambda item: item[1])
        if (best >= 0) if down_to is None else len(stats) <= down_to:
            break
        labels[labels == b] = a
        stats[a] = stats[a] + stats.pop(b)
        scores = {pair: v for pair, v in scores.items() if a not in pair and b not in pair}
        for k in stats:
            if k != a:
                pair = (min(a, k), max(a, k))
                scores[pair] = _delta_bic(stats[pair[0]], stats[pair[1]], penalty)
    return labels


def gaussian_resegment(labels, frames, rounds=5):
    """Each region moved to the speaker whose Gaussian (fitted on that speaker's MFCC frames) gives its frames the
    highest likelihood, until nothing moves (stops when a speaker would lose all its regions)."""
    labels = np.asarray(labels).copy()
    for _ in range(rounds):
        keys = np.unique(labels)
        if len(keys) < 2:
            break
        models = []
        for k in keys:
            x = np.concatenate([frames[i] for i in np.flatnonzero(labels == k)]).astype(np.float64)
            covariance = np.cov(x.T) + 1e-6 * np.eye(x.shape[1])
            models.append((x.mean(axis=0), np.linalg.inv(covariance), np.linalg.slogdet(covariance)[1]))
        scores = np.array([[np.sum(-0.5 * (np.einsum("ij,jk,ik->i", f - m, inv, f - m) + logdet)) / len(f)
                            for m, inv, logdet in models] for f in frames])
        moved = keys[np.argmax(scores, axis=1)]
        if (moved == labels).all() or len(np.unique(moved)) < len(keys):
            break
        labels = moved
    return labels


def tree_count_multi(trees, statistics, penalty, max_speakers=8, linkage="average"):
    """recording.speaker_tree_cut over the cuts of several trees (one per representation of the regions; `linkage`
    of the agglomerative clustering, "ward" on the unit vectors in Euclidean distance)."""
    from sklearn.cluster import AgglomerativeClustering

    from hcam.processing.voice_features import gaussian_log_likelihood

    n = len(trees[0])
    d = int(round((np.sqrt(1 + 4 * (statistics.shape[1] - 1)) - 1) / 2))
    cluster_penalty = penalty * 0.5 * (d + d * (d + 1) / 2) * np.log(statistics[:, 0].sum())
    candidates = [np.zeros(n, dtype=int)] + [
        AgglomerativeClustering(n_clusters=k, metric="euclidean" if linkage == "ward" else "cosine",
                                linkage=linkage).fit_predict(vectors)
        for vectors in trees for k in range(2, min(max_speakers, n - 1) + 1)]
    scores = [sum(gaussian_log_likelihood(statistics[labels == c].sum(axis=0)) for c in np.unique(labels))
              - cluster_penalty * len(np.unique(labels)) for labels in candidates]
    return candidates[int(np.argmax(scores))]


def variants():
    """{name: function(regions, centres, embeddings, true speaker count) -> turns}: each a speaker step to compare."""
    from sklearn.cluster import AgglomerativeClustering, SpectralClustering

    from hcam.processing import recording as rec

    def turns(pieces):
        return rec._turns_from_pieces(pieces, rec.DEFAULT_MIN_PAUSE, rec.DEFAULT_MAX_TURN_SECONDS)

    def patched(bic_count=False, supervectors=False, **names):
        """find_turns' speaker step with some of recording.py's constants or functions replaced; the count from the
        MFCC BIC of the embeddings' tree with `bic_count` (and, `supervectors`, of the second tree of the embeddings
        joined with the regions' GMM supervectors: find_turns' default), else from the silhouette (the default of
        session 7; the variants of the first round are built on it)."""
        def run(regions, centres, embeddings, _, spectra=None, frames=None):
            saved = {k: getattr(rec, k) for k in names}
            try:
                for k, v in names.items():
                    setattr(rec, k, v)
                return turns(rec._speaker_pieces(regions, centres, embeddings, None,
                                                 statistics=statistics_of(frames) if bic_count else None,
                                                 frames=frames if bic_count and supervectors else None))
            finally:
                for k, v in saved.items():
                    setattr(rec, k, v)
        return run

    original_cluster, original_estimate = rec.cluster_speakers, rec.estimate_speakers

    def estimate_eigengap(embeddings, max_speakers=rec.MAX_SPEAKERS, distance_threshold=rec.SPEAKER_DISTANCE_THRESHOLD):
        if original_estimate(embeddings, max_speakers, distance_threshold) == 1:  # the same one-speaker test
            return 1
        return max(2, eigengap_count(embeddings, max_speakers))

    def estimate_silhouette_min(min_score):
        """The most clusters whose silhouette is within `min_score` of the best (close voices give a flat curve)."""
        def estimate(embeddings, max_speakers=rec.MAX_SPEAKERS, distance_threshold=rec.SPEAKER_DISTANCE_THRESHOLD):
            from sklearn.metrics import silhouette_score

            if original_estimate(embeddings, max_speakers, distance_threshold) == 1:
                return 1
            scores = {}
            for k in range(2, min(max_speakers, len(embeddings) - 1) + 1):
                labels = AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit_predict(
                    embeddings)
                scores[k] = silhouette_score(embeddings, labels, metric="cosine")
            best = max(scores.values())
            return max(k for k, v in scores.items() if v >= best - min_score)
        return estimate

    def refined(cluster):
        """Clustering, then regions reassigned to the nearest speaker centroid until nothing moves (k-means steps)."""
        def run(embeddings, weights=None, num_speakers=None, **kwargs):
            labels = cluster(embeddings, weights, num_speakers, **kwargs)
            for _ in range(10):
                centroids = rec._centroids(embeddings, labels, weights)
                keys = np.array(list(centroids))
                moved = keys[np.argmax(embeddings @ np.stack([centroids[k] for k in keys]).T, axis=1)]
                if (moved == labels).all() or len(np.unique(moved)) < len(keys):
                    break
                labels = moved
            return rec._by_first_appearance(labels)
        return run

    def spectral(estimate):
        def run(embeddings, weights=None, num_speakers=None, **kwargs):
            n = len(embeddings)
            k = num_speakers or estimate(embeddings)
            if k <= 1 or n <= k:
                return np.zeros(n, dtype=int) if k <= 1 else original_cluster(embeddings, weights, k)
            affinity = np.clip(embeddings @ embeddings.T, 0, 1)
            labels = SpectralClustering(n_clusters=k, affinity="precomputed", random_state=0).fit_predict(affinity)
            return rec._by_first_appearance(labels)
        return run

    def windowed_count(estimate):
        """The count estimated on every window's embedding (sliding 1.6 s windows) rather than on region means."""
        def run(regions, centres, embeddings, _, spectra=None, frames=None):
            count = estimate(embeddings[np.random.default_rng(0).choice(
                len(embeddings), min(len(embeddings), rec.MAX_ESTIMATE_EMBEDDINGS), replace=False)])
            return turns(rec._speaker_pieces(regions, centres, embeddings, count))
        return run

    def windowed_clusters(regions, centres, embeddings, _, spectra=None, frames=None):
        """Every window's embedding clustered (count from the default estimate on region means), each region cut
        where its windows' speaker changes."""
        bounds = np.cumsum([0] + [len(c) for c in centres])
        means = np.stack([embeddings[bounds[i]: bounds[i + 1]].mean(axis=0) for i in range(len(regions))])
        means /= np.linalg.norm(means, axis=1, keepdims=True) + 1e-9
        count = original_estimate(means)
        labels = original_cluster(embeddings, None, count)
        pieces = []
        for i, (_, start, end) in enumerate(regions):
            pieces.extend(rec._pieces((start, end), centres[i], [int(k) for k in labels[bounds[i]: bounds[i + 1]]]))
        return turns(pieces)

    def region_means(centres, embeddings):
        bounds = np.cumsum([0] + [len(c) for c in centres])
        means = np.stack([embeddings[bounds[i]: bounds[i + 1]].mean(axis=0) for i in range(len(centres))])
        return means / (np.linalg.norm(means, axis=1, keepdims=True) + 1e-9)

    def centred(then=None, whiten=0):
        """The one-speaker test on the raw embeddings; then every embedding less the recording's mean embedding
        (what all its voices share: the channel, the synthesiser), renormalised (optionally PCA-whitened to `whiten`
        dimensions), for the count and the clustering."""
        def run(regions, centres, embeddings, n, spectra=None, frames=None):
            if original_estimate(region_means(centres, embeddings)) == 1:
                return turns(rec._speaker_pieces(regions, centres, embeddings, 1))
            shifted = embeddings - embeddings.mean(axis=0)
            if whiten:
                _, values, vectors = np.linalg.svd(shifted, full_matrices=False)
                shifted = shifted @ vectors[:whiten].T / (values[:whiten] / np.sqrt(len(shifted)) + 1e-6)
            shifted /= np.linalg.norm(shifted, axis=1, keepdims=True) + 1e-9
            if then is None:
                return turns(rec._speaker_pieces(regions, centres, shifted, None))
            return then(regions, centres, shifted, n)
        return run

    def with_spectra(weight, stds=False, one_speaker_test="raw"):
        """Each region clustered on its mean speaker embedding joined with its MFCC means (c1..c19; with `stds`, their
        standard deviations too), standardised over the recording and scaled so that the MFCC part weighs `weight`
        of the vector; the one-speaker test on the raw embeddings ("raw") or on the joined vectors ("joined")."""
        def run(regions, centres, embeddings, n, spectra=None, frames=None):
            means = region_means(centres, embeddings)
            if one_speaker_test == "raw" and original_estimate(means) == 1:
                return turns(rec._speaker_pieces(regions, centres, embeddings, 1))
            extra = spectra[:, : 19 * (2 if stds else 1)]
            extra = (extra - extra.mean(axis=0)) / (extra.std(axis=0) + 1e-6)
            extra /= np.sqrt(extra.shape[1])  # unit expected norm
            joined = np.concatenate([np.sqrt(1 - weight) * means, np.sqrt(weight) * extra], axis=1)
            joined /= np.linalg.norm(joined, axis=1, keepdims=True) + 1e-9
            return turns(rec._speaker_pieces(regions, centres, embeddings, None, region_vectors=joined))
        return run

    def true_count(regions, centres, embeddings, n, spectra=None, frames=None):
        return turns(rec._speaker_pieces(regions, centres, embeddings, n))

    def threshold(value):
        """cluster_speakers with another distance threshold (its default is bound when recording.py is imported)."""
        def run(embeddings, weights=None, num_speakers=None, **kwargs):
            return original_cluster(embeddings, weights, num_speakers, distance_threshold=value)
        return run

    def bic(start=0.2, penalty=1.0):
        """Regions first clustered on their mean speaker embedding with a strict cosine distance threshold `start`
        (0: every region its own cluster), then merged by delta-BIC of their MFCC frames (`penalty`); a cluster with
        less than MIN_SPEAKER_SHARE of the speech goes to the nearest speaker centroid; regions cut inside by their
        embeddings as in find_turns."""
        def run(regions, centres, embeddings, n, spectra=None, frames=None):
            means = region_means(centres, embeddings)
            durations = np.array([b - a for _, a, b in regions])
            if start > 0 and len(means) > 1:
                labels = AgglomerativeClustering(n_clusters=None, distance_threshold=start, metric="cosine",
                                                 linkage="average").fit_predict(means)
            else:
                labels = np.arange(len(means))
            labels = rec._fold_small(means, bic_merge(labels, statistics_of(frames), penalty), durations)
            return fixed_labels(regions, centres, embeddings, labels)
        return run

    def bic_to_tree_count(start, choose=False):
        """The count of find_turns' default (the MFCC BIC cut of the embeddings' tree); the partition from clusters
        at a strict cosine distance `start` merged by delta-BIC down to that count (`choose`: whichever of this and
        the tree's cut has the higher likelihood)."""
        def run(regions, centres, embeddings, n, spectra=None, frames=None):
            means = region_means(centres, embeddings)
            durations = np.array([b - a for _, a, b in regions])
            statistics = statistics_of(frames)
            cut = rec._fold_small(means, rec.speaker_tree_cut(means, statistics), durations)
            k = len(np.unique(cut))
            if k == 1 or len(means) < 3:
                return fixed_labels(regions, centres, embeddings, cut)
            start_labels = AgglomerativeClustering(n_clusters=None, distance_threshold=start, metric="cosine",
                                                   linkage="average").fit_predict(means)
            merged = rec._fold_small(means, bic_merge(start_labels, statistics, 1.0, down_to=k), durations)
            if choose:
                def likelihood(labels):
                    return sum(rec.gaussian_log_likelihood(statistics[labels == c].sum(axis=0))
                               for c in np.unique(labels))
                if len(np.unique(merged)) != k or likelihood(cut) >= likelihood(merged):
                    merged = cut
            return fixed_labels(regions, centres, embeddings, merged)
        return run

    def resegmented(given_count):
        """The silhouette count's clustering (or, `given_count`, the true count's), then regions moved by per-speaker
        Gaussians of their MFCC frames."""
        def run(regions, centres, embeddings, n, spectra=None, frames=None):
            means = region_means(centres, embeddings)
            durations = np.array([b - a for _, a, b in regions])
            return fixed_labels(regions, centres, embeddings, gaussian_resegment(
                original_cluster(means, durations, n if given_count else None), frames))
        return run

    def fixed_labels(regions, centres, embeddings, labels):
        """find_turns' speaker step with these region labels (the pieces cut inside regions as it does)."""
        fixed = rec._by_first_appearance(labels)
        saved = rec.cluster_speakers
        try:
            rec.cluster_speakers = lambda *a, **k: fixed
            return turns(rec._speaker_pieces(regions, centres, embeddings, None))
        finally:
            rec.cluster_speakers = saved

    def joined(means, spectra, weight):
        if weight == 0:
            return means
        extra = (spectra - spectra.mean(axis=0)) / (spectra.std(axis=0) + 1e-6) / np.sqrt(spectra.shape[1])
        return np.concatenate([np.sqrt(1 - weight) * means, np.sqrt(weight) * extra], axis=1)

    def hybrid(penalty, mfcc_weight=0.0, resegment=False, linkage="average"):
        """Count and partition from the average-linkage tree of the regions' mean speaker embeddings (optionally
        joined with their standardised MFCC statistics, `mfcc_weight` of the vector), the cut chosen by BIC on the
        regions' MFCC frames (recording.speaker_tree_cut; a tuple of weights: the cuts of one tree per weight);
        small clusters folded; optionally Gaussian resegmentation."""
        def run(regions, centres, embeddings, n, spectra=None, frames=None):
            means = region_means(centres, embeddings)
            durations = np.array([b - a for _, a, b in regions])
            weights = mfcc_weight if isinstance(mfcc_weight, tuple) else (mfcc_weight,)
            trees = [joined(means, spectra, w) for w in weights]
            labels = tree_count_multi(trees, statistics_of(frames), penalty, linkage=linkage) if len(means) > 2 else \
                np.zeros(len(means), dtype=int)
            labels = rec._fold_small(means, labels, durations)
            if resegment:
                labels = gaussian_resegment(labels, frames)
            return fixed_labels(regions, centres, embeddings, labels)
        return run

    return {
        "true count, Gaussian resegmentation (a bound)": resegmented(True),
        **{f"tree cut by MFCC BIC, penalty {p}{f', MFCC stats weight {w} in the tree' if w else ''}"
           f"{', resegmented' if r else ''}": hybrid(p, w, r)
           for p in (3.0, 3.5, 4.0, 5.0) for w in (0.0, 0.3) for r in (False, True)},
        **{f"tree cut by MFCC BIC, penalty {p}, {linkage} linkage": hybrid(p, linkage=linkage)
           for p in (3.0, 3.5, 4.0) for linkage in ("ward", "complete")},
        **{f"trees {'/'.join(map(str, w))} cut by MFCC BIC, penalty {p}{', resegmented' if r else ''}": hybrid(p, w, r)
           for p in (3.0, 3.5, 4.0) for w in ((0.0, 0.3), (0.0, 0.3, 0.6, 1.0)) for r in (False, True)},
        "silhouette count + Gaussian resegmentation (MFCC frames)": resegmented(False),
        **{f"tree-cut count, partition by BIC merge from distance {t} down to it"
           f"{', or the cut if likelier' if c else ''}": bic_to_tree_count(t, c)
           for t in (0.1, 0.15, 0.2) for c in (False, True)},
        **{f"BIC merge from distance {t}, penalty {p}": bic(t, p)
           for t in (0.0, 0.1, 0.15, 0.2) for p in (1.0, 2.0, 3.0, 3.5, 4.0)},
        **{f"embedding + MFCC means, MFCC weight {w}": with_spectra(w) for w in (0.2, 0.35, 0.5)},
        **{f"embedding + MFCC means and stds, MFCC weight {w}": with_spectra(w, stds=True) for w in (0.2, 0.35)},
        "embedding + MFCC means 0.35, one-speaker test on both": with_spectra(0.35, one_speaker_test="joined"),
        "centred embeddings": centred(),
        "centred embeddings, count on windows": centred(windowed_count(original_estimate)),
        "centred embeddings, eigengap count": centred(patched(estimate_speakers=estimate_eigengap)),
        "centred embeddings, refined": centred(patched(cluster_speakers=refined(original_cluster))),
        "centred and whitened (32 dims)": centred(whiten=32),
        "centred, true count (a bound)": centred(true_count),
        DEFAULT_VARIANT: patched(bic_count=True, supervectors=True),
        "MFCC BIC cut of the embeddings' tree only (the default before)": patched(bic_count=True),
        "silhouette count (the default before)": patched(),
        "true count given (a bound, not a default)": true_count,
        "eigengap count (NME-SC)": patched(estimate_speakers=estimate_eigengap),
        "silhouette within 0.02 of best, most clusters": patched(estimate_speakers=estimate_silhouette_min(0.02)),
        "silhouette within 0.05 of best, most clusters": patched(estimate_speakers=estimate_silhouette_min(0.05)),
        "refined (k-means steps on regions)": patched(cluster_speakers=refined(original_cluster)),
        "spectral clustering, silhouette count": patched(cluster_speakers=spectral(original_estimate)),
        "spectral clustering, eigengap count": patched(cluster_speakers=spectral(estimate_eigengap)),
        "count on windows (silhouette)": windowed_count(original_estimate),
        "windows clustered (not region means)": windowed_clusters,
        "min speaker share 0.015": patched(MIN_SPEAKER_SHARE=0.015),
        **{f"speaker distance threshold {t}": patched(cluster_speakers=threshold(t)) for t in (0.25, 0.30, 0.36, 0.40)},
        "no cut inside a speech region": patched(_pieces=lambda region, centres, labels: [
            (region[0], region[1], max(set(labels), key=list(labels).count))]),
        "shortest piece inside a region 0.4 s": patched(MIN_SPEAKER_SEGMENT=0.4),
        "shortest piece inside a region 1.0 s": patched(MIN_SPEAKER_SEGMENT=1.0),
    }


def timing(path):
    """Seconds of each part of find_turns' speaker step on one recording (one pass each, side by side): voice activity
    with the speaker embeddings, the regions' MFCC statistics, the count by the MFCC BIC of the tree (the default) and
    by the silhouette (the default before), and find_turns itself; as fractions of the recording's duration."""
    import time

    from hcam.processing import recording as rec

    vad, get_speech_timestamps = rec._silero()
    encoder = rec._voice_encoder()
    source = rec._Source(path)
    seconds = {"voice activity + speaker embeddings": 0.0, "MFCC statistics": 0.0}
    regions, centres, embeddings, statistics, frames = [], [], [], [], []
    try:
        clock = time.perf_counter()
        for channel, start, end, audio in rec._stream_regions(source, rec.DEFAULT_WINDOW_SECONDS, 1, vad,
                                                              get_speech_timestamps):
            regions.append((channel, start, end))
            pairs = rec._region_embeddings(encoder, audio)
            centres.append([c for c, _ in pairs])
            embeddings.extend(e for _, e in pairs)
            tick = time.perf_counter()
            frames.append(rec.mfcc_frames(audio))
            statistics.append(rec.mfcc_statistics(frames=frames[-1]))
            seconds["MFCC statistics"] += time.perf_counter() - tick
        seconds["voice activity + speaker embeddings"] = time.perf_counter() - clock - seconds["MFCC statistics"]
        duration = source.duration
    finally:
        source.close()
    embeddings, statistics = np.asarray(embeddings), np.stack(statistics)
    for name, given, second in (("count: MFCC BIC of both trees (default)", statistics, frames),
                                ("count: MFCC BIC of the embeddings' tree", statistics, None),
                                ("count: silhouette (session 7)", None, None)):
        clock = time.perf_counter()
        rec._speaker_pieces(regions, centres, embeddings, None, statistics=given, frames=second)
        seconds[name] = time.perf_counter() - clock
    clock = time.perf_counter()
    rec.find_turns(path)
    seconds["find_turns, all of it"] = time.perf_counter() - clock
    print(f"{Path(path).name}: {duration:.0f} s of audio, {len(regions)} speech regions")
    for name, value in seconds.items():
        print(f"  {name:<42} {value:7.2f} s  {value / duration:.4f}x real time")
    return {"recording": Path(path).name, "seconds_of_audio": duration, "regions": len(regions), "seconds": seconds}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", nargs="+", help="folders written by bench/make_recordings.py")
    parser.add_argument("--timing", help="instead: time the speaker step's parts on this recording")
    parser.add_argument("--cache", help="keep each recording's voice activity and embeddings here")
    parser.add_argument("--only", nargs="*", help="names of the variants to run (default: all)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if args.timing:
        result = timing(args.timing)
        if args.json:
            Path(args.json).write_text(json.dumps(
                {"command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
                 "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                 "machine": f"{os.cpu_count()}-core {platform.machine()}", "load": os.getloadavg(), **result},
                indent=1) + "\n")
        return
    if not args.recordings:
        parser.error("give --recordings (folders of bench/make_recordings.py) or --timing FILE")
    warnings.filterwarnings("ignore", message=".*uem.*")
    from pyannote.metrics.diarization import DiarizationErrorRate

    from bench_recordings import annotation

    table = variants()
    names = [n for n in table if not args.only or n in args.only]
    rows = []
    for folder in map(Path, args.recordings):
        for item in json.loads((folder / "recordings.json").read_text()):
            with open(folder / f"{item['name']}.turns.csv", encoding="utf-8") as f:
                gold = list(csv.DictReader(f))
            regions, centres, embeddings, spectra, frames = embeddings_of(folder / f"{item['name']}.wav", args.cache)
            row = {"name": item["name"], "speakers": item["speakers"], "variants": {}}
            for name in names:
                found = table[name](regions, centres, embeddings, item["speakers"], spectra=spectra, frames=frames)
                row["variants"][name] = {"der": DiarizationErrorRate(collar=0.0)(annotation(gold), annotation(found)),
                                         "speakers": len({t["speaker"] for t in found})}
            rows.append(row)
            print(json.dumps(row), flush=True)
            # one voice alone: the regions of each gold speaker who has at least 6, scored against their own turns
            owner = [max(gold, key=lambda g: min(b, float(g["end"])) - max(a, float(g["start"])))["speaker"]
                     for _, a, b in regions]
            bounds = np.cumsum([0] + [len(c) for c in centres])
            for speaker in sorted(set(owner)):
                keep = [i for i, o in enumerate(owner) if o == speaker]
                if len(keep) < MIN_REGIONS_ALONE:
                    continue
                alone = {"name": f"{item['name']} {speaker} alone", "speakers": 1, "variants": {}}
                sub = ([regions[i] for i in keep], [centres[i] for i in keep],
                       np.concatenate([embeddings[bounds[i]: bounds[i + 1]] for i in keep]))
                sub_spectra, sub_frames = spectra[keep], [frames[i] for i in keep]
                reference = [g for g in gold if g["speaker"] == speaker]
                for name in names:
                    found = table[name](*sub, 1, spectra=sub_spectra, frames=sub_frames)
                    alone["variants"][name] = {
                        "der": DiarizationErrorRate(collar=0.0)(annotation(reference), annotation(found)),
                        "speakers": len({t["speaker"] for t in found})}
                rows.append(alone)

    def group(row):
        voices = "espeak" if row["name"].startswith("espeak") else "flite"
        return f"{voices}, " + ("1 voice" if row["speakers"] == 1 else "2-3 speakers" if row["speakers"] <= 3 else
                                "4 speakers")

    groups = sorted({group(r) for r in rows})
    summary = {name: {g: {"der": float(np.mean([r["variants"][name]["der"] for r in rows if group(r) == g])),
                          "count_right": sum(r["variants"][name]["speakers"] == r["speakers"] for r in rows
                                             if group(r) == g),
                          "recordings": sum(group(r) == g for r in rows)} for g in groups} for name in names}
    print(f"\n{'variant':<56}" + "".join(f"{g:>22}" for g in groups))
    for name in names:
        print(f"{name[:55]:<56}" + "".join(f"{summary[name][g]['der']:>14.3f} ({summary[name][g]['count_right']:>2}/"
                                           f"{summary[name][g]['recordings']:>2})" for g in groups))
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip()
    report = {"command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "revision": revision,
              "machine": f"{os.cpu_count()}-core {platform.machine()}", "load": os.getloadavg(),
              "summary": summary, "recordings": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
