"""Variants of the speaker step of `find_turns`, scored on recordings of bench/make_recordings.py: the diarization
error rate (pyannote.metrics, no collar, against the gold turns, as bench/bench_recordings.py scores it) and whether
the number of speakers came out right.

Voice activity and speaker embeddings (and each speech region's MFCC statistics, for the variants that use them)
are computed once per recording (the same calls as find_turns, cached in --cache); each variant then only clusters.
Besides each recording, each of its voices alone is scored (the speech regions of one gold speaker with at least
MIN_REGIONS_ALONE, against that speaker's turns): a variant that finds more speakers must not split one voice in two.
Its DER has a floor (the speech this voice spoke over another one is missing from its regions); what matters there
is the count.
Choose among variants on recordings of a seed the benchmark does not score (--seed 100), never on the scored ones
(--seed 0).

    python bench/make_recordings.py --out /tmp/s100f --seed 100 --speakers 2 2 3 3 4 4 --turns 40
    python bench/make_recordings.py --out /tmp/s100e --seed 100 --speakers 2 2 3 3 4 4 --turns 40 --tts espeak
    python bench/bench_diarization.py --recordings /tmp/s100f /tmp/s100e --json diarization.json

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


def embeddings_of(path, cache):
    """(regions [(channel, start, end)], centres per region, embeddings) of a recording, as find_turns computes them."""
    from hcam.processing import recording as rec

    target = Path(cache) / (Path(path).stem + ".json") if cache else None
    if target is not None and target.is_file():
        data = json.loads(target.read_text())
        if "mfcc" in data:
            return ([tuple(r) for r in data["regions"]], data["centres"],
                    np.asarray(data["embeddings"], dtype=np.float32), np.asarray(data["mfcc"], dtype=np.float32))
    import torch
    import torchaudio

    mfcc = torchaudio.transforms.MFCC(sample_rate=rec.SAMPLING_RATE, n_mfcc=20,
                                      melkwargs={"n_fft": 400, "hop_length": 160, "n_mels": 40})
    vad, get_speech_timestamps = rec._silero()
    encoder = rec._voice_encoder()
    source = rec._Source(path)
    regions, centres, embeddings, spectra = [], [], [], []
    try:
        for channel, start, end, audio in rec._stream_regions(source, rec.DEFAULT_WINDOW_SECONDS, 1, vad,
                                                              get_speech_timestamps):
            regions.append((channel, start, end))
            pairs = rec._region_embeddings(encoder, audio)
            centres.append([float(c) for c, _ in pairs])
            embeddings.extend(e for _, e in pairs)
            coefficients = mfcc(torch.from_numpy(np.ascontiguousarray(audio)))[1:]  # c1..c19 (c0 is loudness)
            spectra.append(torch.cat([coefficients.mean(dim=1), coefficients.std(dim=1)]).tolist())
    finally:
        source.close()
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"regions": regions, "centres": centres, "embeddings": embeddings.tolist(),
                                      "mfcc": spectra}))
    return regions, centres, embeddings, np.asarray(spectra, dtype=np.float32)


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


def variants():
    """{name: function(regions, centres, embeddings, true speaker count) -> turns}: each a speaker step to compare."""
    from sklearn.cluster import AgglomerativeClustering, SpectralClustering

    from hcam.processing import recording as rec

    def turns(pieces):
        return rec._turns_from_pieces(pieces, rec.DEFAULT_MIN_PAUSE, rec.DEFAULT_MAX_TURN_SECONDS)

    def patched(**names):
        """find_turns' speaker step with some of recording.py's constants or functions replaced."""
        def run(regions, centres, embeddings, _, spectra=None):
            saved = {k: getattr(rec, k) for k in names}
            try:
                for k, v in names.items():
                    setattr(rec, k, v)
                return turns(rec._speaker_pieces(regions, centres, embeddings, None))
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
        def run(regions, centres, embeddings, _, spectra=None):
            count = estimate(embeddings[np.random.default_rng(0).choice(
                len(embeddings), min(len(embeddings), rec.MAX_ESTIMATE_EMBEDDINGS), replace=False)])
            return turns(rec._speaker_pieces(regions, centres, embeddings, count))
        return run

    def windowed_clusters(regions, centres, embeddings, _, spectra=None):
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
        def run(regions, centres, embeddings, n, spectra=None):
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
        def run(regions, centres, embeddings, n, spectra=None):
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

    def true_count(regions, centres, embeddings, n, spectra=None):
        return turns(rec._speaker_pieces(regions, centres, embeddings, n))

    def threshold(value):
        """cluster_speakers with another distance threshold (its default is bound when recording.py is imported)."""
        def run(embeddings, weights=None, num_speakers=None, **kwargs):
            return original_cluster(embeddings, weights, num_speakers, distance_threshold=value)
        return run

    return {
        **{f"embedding + MFCC means, MFCC weight {w}": with_spectra(w) for w in (0.2, 0.35, 0.5)},
        **{f"embedding + MFCC means and stds, MFCC weight {w}": with_spectra(w, stds=True) for w in (0.2, 0.35)},
        "embedding + MFCC means 0.35, one-speaker test on both": with_spectra(0.35, one_speaker_test="joined"),
        "centred embeddings": centred(),
        "centred embeddings, count on windows": centred(windowed_count(original_estimate)),
        "centred embeddings, eigengap count": centred(patched(estimate_speakers=estimate_eigengap)),
        "centred embeddings, refined": centred(patched(cluster_speakers=refined(original_cluster))),
        "centred and whitened (32 dims)": centred(whiten=32),
        "centred, true count (a bound)": centred(true_count),
        "default (silhouette count, agglomerative)": patched(),
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", nargs="+", required=True, help="folders written by bench/make_recordings.py")
    parser.add_argument("--cache", help="keep each recording's voice activity and embeddings here")
    parser.add_argument("--only", nargs="*", help="names of the variants to run (default: all)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
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
            regions, centres, embeddings, spectra = embeddings_of(folder / f"{item['name']}.wav", args.cache)
            row = {"name": item["name"], "speakers": item["speakers"], "variants": {}}
            for name in names:
                found = table[name](regions, centres, embeddings, item["speakers"], spectra=spectra)
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
                sub_spectra = spectra[keep]
                reference = [g for g in gold if g["speaker"] == speaker]
                for name in names:
                    found = table[name](*sub, 1, spectra=sub_spectra)
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
