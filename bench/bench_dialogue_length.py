#!/usr/bin/env python
"""Benchmark 4: time and peak memory of stages II-III against dialogue length (10 to 1,000 turns).

Input: one dialogue of cached stage-I embeddings (what stages II-III see), a stage-3 model with GRU 200 and 3 heads.
Measured: inference (stages II + III + ensemble) and a stage-3 training step (forward + backward + Adam), each in a
fresh process so that the peak resident memory (ru_maxrss) is that length's alone, counted above the same
process's baseline after a 2-turn warm-up. The growth exponent is the log-log slope between 100 and 1,000 turns.
Bars: time exponent <= 1.5 (the GRU is linear; turn-level attention is the only quadratic part) and the
1,000-turn training step peaks below 1 GiB.

    python bench/bench_dialogue_length.py [--quick]
"""

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from common import hcam_config, machine, parser, report, row

EXPONENT_BAR = 1.5
MEMORY_BAR_MIB = 1024


def child(turns, repeats):
    from hcam.modeling_hcam import HCAMForEmotionRecognition

    torch.manual_seed(0)
    model = HCAMForEmotionRecognition(hcam_config("tiny", stage=3)).freeze_stages_below(3)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    width = model.config.utterance_embedding_size

    def inputs(n):
        generator = torch.Generator().manual_seed(n)
        return dict(audio_embeddings=torch.randn(1, n, width, generator=generator),
                    text_embeddings=torch.randn(1, n, width, generator=generator),
                    speaker_ids=torch.arange(n)[None] % 3, labels=torch.randint(0, 7, (1, n), generator=generator))

    def run(batch, mode):
        if mode == "inference":
            model.eval()
            with torch.inference_mode():
                model(**batch)
        else:
            model.train()
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()

    results = {}
    for mode in ("inference", "training step"):  # inference first: its peak is not the training step's
        run(inputs(2), mode)
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        batch = inputs(turns)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run(batch, mode)
            times.append(time.perf_counter() - start)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline
        results[mode] = {"seconds": statistics.median(times), "peak_mib": peak / 1024}
    print(json.dumps(results))


def measure(turns, repeats, threads):
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", str(turns), str(repeats), "--threads", str(threads)],
        capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def slope(xs, ys):
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-9)) for y in ys]
    mx, my = statistics.mean(lx), statistics.mean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        if "--threads" in argv and int(argv[argv.index("--threads") + 1]):
            torch.set_num_threads(int(argv[argv.index("--threads") + 1]))
        return child(int(argv[1]), int(argv[2]))
    args = parser(__doc__).parse_args(argv)
    print(f"# bench_dialogue_length on {machine()}")
    lengths = [10, 100, 1000] if args.quick else [10, 30, 100, 300, 1000]
    rows = []
    measured = [measure(n, 3 if args.quick else 5, args.threads) for n in lengths]
    for mode in ("inference", "training step"):
        results = [m[mode] for m in measured]
        print(f"  {mode}:")
        print("    turns | time (ms) | ms per turn | peak memory above baseline (MiB)")
        for n, r in zip(lengths, results):
            print(f"    {n:5d} | {r['seconds'] * 1000:9.1f} | {r['seconds'] * 1000 / n:11.3f} | {r['peak_mib']:8.1f}")
        tail = [(n, r) for n, r in zip(lengths, results) if n >= 100]
        exponent = slope([n for n, _ in tail], [r["seconds"] for _, r in tail])
        rows.append(row("4 dialogue length", f"{mode}: time exponent 100-1,000 turns",
                        f"{exponent:.2f} ({results[-1]['seconds'] * 1000:.0f} ms at {lengths[-1]} turns)",
                        f"<= {EXPONENT_BAR}", exponent <= EXPONENT_BAR))
        rows.append(row("4 dialogue length", f"{mode}: peak memory at {lengths[-1]} turns",
                        f"{results[-1]['peak_mib']:.0f} MiB above baseline", f"< {MEMORY_BAR_MIB} MiB",
                        results[-1]["peak_mib"] < MEMORY_BAR_MIB))
    return report(rows, args.json)


if __name__ == "__main__":
    main()
