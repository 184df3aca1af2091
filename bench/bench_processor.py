#!/usr/bin/env python
"""Benchmark 6: processor throughput on audio, in audio-seconds per wall-second, on one core.

Bar: HCAMProcessor's audio path (HCAMFeatureExtractor: checks, normalisation, padding into [D, T, S]) runs at
>= 200x real time on one core, on batches of 8 dialogues with MELD-like turn durations given as 16 kHz arrays.
Also printed (no bar): the same from 44.1 kHz arrays with resample=True, and decoding the demo corpus' OGG files
with load_audio.

    python bench/bench_processor.py [--quick]
"""

import glob
import os
import time

import numpy as np

from common import machine, parser, report, row

BAR = 200.0
DEMO_AUDIO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "demo", "audio")


def dialogues(rate, count, seed=0):
    rng = np.random.default_rng(seed)
    batch = []
    for _ in range(count):
        turns = int(rng.integers(3, 16))
        batch.append([(0.1 * rng.standard_normal(int(rate * d))).astype(np.float32)
                      for d in np.clip(rng.lognormal(np.log(2.6), 0.75, turns), 0.3, 15.0)])
    return batch


def throughput(function, batches, audio_seconds, repeats):
    best = []
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            function(batch)
        best.append(time.perf_counter() - start)
    return audio_seconds / sorted(best)[len(best) // 2]


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, whatever --threads says
    from hcam.modeling_hcam.feature_extraction_hcam import HCAMFeatureExtractor, load_audio

    print(f"# bench_processor on {machine()}, pinned to one core")
    count, repeats = (2, 2) if args.quick else (6, 5)
    extractor = HCAMFeatureExtractor()
    batches = [dialogues(16000, 8, seed) for seed in range(count)]
    seconds = sum(len(u) for b in batches for d in b for u in d) / 16000
    speed = throughput(lambda b: extractor(b, sampling_rate=16000), batches, seconds, repeats)
    rows = [row("6 processor", f"16 kHz arrays, {count} batches x 8 dialogues, {seconds:.0f} s audio",
                f"{speed:.0f}x real time", f">= {BAR:.0f}x", speed >= BAR)]

    resampling = HCAMFeatureExtractor(resample=True)
    batches = [dialogues(44100, 8, seed) for seed in range(max(1, count // 2))]
    seconds = sum(len(u) for b in batches for d in b for u in d) / 44100
    speed = throughput(lambda b: resampling(b, sampling_rate=44100), batches, seconds, max(1, repeats // 2))
    rows.append(row("6 processor", f"44.1 kHz arrays resampled, {seconds:.0f} s audio", f"{speed:.0f}x real time",
                    "(info)", True))

    files = sorted(glob.glob(os.path.join(DEMO_AUDIO, "*.ogg")))[: 40 if args.quick else 200]
    if files:
        waves = [load_audio(f) for f in files[:2]]  # warm-up
        start = time.perf_counter()
        waves = [load_audio(f) for f in files]
        elapsed = time.perf_counter() - start
        seconds = sum(len(w) for w in waves) / 16000
        rows.append(row("6 processor", f"load_audio on {len(files)} demo OGG files, {seconds:.0f} s audio",
                        f"{seconds / elapsed:.0f}x real time", "(info)", True))
    return report(rows, args.json)


if __name__ == "__main__":
    main()
