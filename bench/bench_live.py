#!/usr/bin/env python
"""Live latency (issue 21): how long a causal HCAM takes to give a turn's prediction once the turn has arrived.

    python bench/bench_live.py --model runs/stacking-causal/oof2+noise0.5/seed42/stage3 [--asr] [--turns 200]

A conversation of `--turns` turns is built from the demo corpus's test clips (data/demo: audio, transcript and
speaker of each turn, in order, cycled), and fed to `HCAMConversationStream` (`pipeline.start_conversation()`, what
`hcam-predict --live` and `pipeline(..., stream=True)` run) one turn at a time. The latency of a turn is the wall time
of its `add_turn` call: reading its audio file, the feature extractor and tokenizer, the stage-I encoders on that turn
alone, stages II-III going on from the cache, the ensemble. Reported at turns 1, 10, 50 and 200 (median over
`--repeats` conversations) and over all turns (median, p95), with the share of each part (measured with the same
calls inside one `add_turn`), and side by side the cost of the other way to get a live answer with a causal model:
running the pipeline on the whole conversation so far at each turn (every earlier turn's encoders again).
With `--asr`, the measured turns come without text and the packed Whisper of `hcam-predict --asr whisper` (hcam[asr])
transcribes them in the same call (its cost is per turn, not per position).

Bars (issue 21): turn 200 <= 1.5x turn 1 and p95 <= 100 ms without ASR, on 2 CPU cores.
"""

import argparse
import csv
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "data", "demo")
POSITIONS = (1, 10, 50, 200)


def demo_turns(count):
    """`count` turns: the demo test dialogues' turns in order, cycled (speakers renamed per cycle so they stay two)."""
    with open(os.path.join(DEMO, "test.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [{"audio": os.path.join(DEMO, rows[i % len(rows)]["audio"]), "text": rows[i % len(rows)]["text"],
             "speaker": rows[i % len(rows)]["speaker"]} for i in range(count)]


class PartTimer:
    """Wall time of named parts of add_turn calls: the stream's audio reader, processor, encoders and recogniser are
    replaced by timed stand-ins that call them (`restore()` puts them back)."""

    def __init__(self):
        self.parts, self.replaced = {}, []

    def _timed(self, function, name):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.parts[name] = self.parts.get(name, 0.0) + time.perf_counter() - started
        return timed

    def wrap(self, obj, attribute, name, called_object=False):
        original = getattr(obj, attribute)
        timed = self._timed(original, name)
        stand_in = timed
        if called_object:  # an object called through its class's __call__ (the processor): keep its attributes
            stand_in = type("Timed", (), {"__call__": lambda self, *a, **k: timed(*a, **k),
                                          "__getattr__": lambda self, name: getattr(original, name)})()
        setattr(obj, attribute, stand_in)
        self.replaced.append((obj, attribute, attribute in vars(obj), original))

    def restore(self):
        for obj, attribute, own, original in reversed(self.replaced):
            if own:
                setattr(obj, attribute, original)
            else:
                delattr(obj, attribute)
        self.replaced = []


def run_stream(pipe, turns, transcriber=None, asr_at=(), timer=None):
    """Seconds of each add_turn of one conversation (turns in `asr_at`, 1-based, come without text)."""
    stream = pipe.start_conversation(transcriber=transcriber)
    if timer is not None:  # the same calls add_turn makes, timed apart
        timer.wrap(stream.processor.feature_extractor, "waveform", "read audio")
        timer.wrap(stream, "processor", "features + tokens", called_object=True)
        timer.wrap(stream.model, "get_utterance_embeddings", "stage-I encoders")
    seconds = []
    try:
        for position, turn in enumerate(turns, 1):
            text = None if position in asr_at else turn["text"]
            started = time.perf_counter()
            stream.add_turn(audio=turn["audio"], text=text, speaker=turn["speaker"])
            seconds.append(time.perf_counter() - started)
    finally:
        if timer is not None:
            timer.restore()
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a causal HCAM folder (e.g. a demo_causal.json stage 3)")
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5, help="conversations timed (medians over them)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: one live call)")
    parser.add_argument("--asr", action="store_true", help="also measure with Whisper transcribing the measured turns")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sys.path.insert(0, os.path.join(REPO, "bench"))
    from common import machine

    from hcam.trainer.predict import load_pipeline

    pipe = load_pipeline(args.model, device="cpu")
    turns = demo_turns(args.turns)
    positions = [p for p in POSITIONS if p <= args.turns]
    run_stream(pipe, turns[:5])  # warm-up
    runs = [run_stream(pipe, turns) for _ in range(args.repeats)]
    per_turn = [statistics.median(run[i] for run in runs) for i in range(args.turns)]
    everything = sorted(x for run in runs for x in run)
    p95 = everything[int(0.95 * (len(everything) - 1))]

    timer = PartTimer()
    run_stream(pipe, turns, timer=timer)
    total = sum(runs[-1])

    # the other way: the pipeline on the whole conversation so far, at each measured position
    recompute = {}
    for position in positions:
        times = []
        for _ in range(max(1, min(args.repeats, 3))):
            started = time.perf_counter()
            pipe({"turns": turns[:position]})
            times.append(time.perf_counter() - started)
        recompute[position] = statistics.median(times)

    asr = {}
    if args.asr:
        from hcam.processing.asr import Transcriber

        transcriber = Transcriber("whisper", cpu_threads=args.threads)
        asr_runs = [run_stream(pipe, turns, transcriber=transcriber, asr_at=positions) for _ in range(3)]
        asr = {p: statistics.median(run[p - 1] for run in asr_runs) for p in positions}

    ms = lambda seconds: f"{1000 * seconds:.1f} ms"  # noqa: E731
    print(f"bench_live: {args.model}, {args.turns}-turn conversation of demo test clips, {args.repeats} conversations")
    print(f"machine: {machine(args.threads)}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
          f"python {platform.python_version()}")
    print(f"\n{'turn':>6} {'stream':>10} {'+ ASR':>10} {'recompute all':>14} {'recompute/stream':>17}")
    for p in positions:
        print(f"{p:>6} {ms(per_turn[p - 1]):>10} {ms(asr[p]) if p in asr else '-':>10} {ms(recompute[p]):>14} "
              f"{recompute[p] / per_turn[p - 1]:>16.1f}x")
    last = positions[-1]
    growth = per_turn[last - 1] / per_turn[0]
    print(f"\nall turns: median {ms(everything[len(everything) // 2])}, p95 {ms(p95)} (bar <= 100 ms: "
          f"{'met' if p95 <= 0.1 else 'MISSED'})")
    print(f"turn {last} / turn 1: {growth:.2f}x (bar <= 1.5x: {'met' if growth <= 1.5 else 'MISSED'})")
    # first vs last quarter of the conversation, less noisy than two single turns
    quarter = max(1, args.turns // 4)
    print(f"last {quarter} turns / first {quarter} turns (medians): "
          f"{statistics.median(per_turn[-quarter:]) / statistics.median(per_turn[:quarter]):.2f}x")
    accounted = sum(timer.parts.values())
    print("\nwhere a turn's time goes (one conversation, all turns): " + ", ".join(
        f"{name} {100 * value / total:.0f}%" for name, value in sorted(timer.parts.items(), key=lambda kv: -kv[1]))
          + f", stages II-III + ensemble + the rest {100 * (total - accounted) / total:.0f}%")


if __name__ == "__main__":
    main()
