#!/usr/bin/env python
"""CPU threads of hcam-predict (issue 24): one thread per process against torch's default (one per core), on the
same conversations, side by side in one run, with the machine otherwise idle and with a second process busy.

    python bench/bench_threads.py [--model FOLDER] [--size tiny|base] [--conversations 6] [--rounds 12]

Each setting gets its own worker process, started with `hcam.trainer.predict.resolve_threads` (what `hcam-predict
--threads N` runs; 0 = one per core) and the checkpoint loaded once (`load_pipeline`). The controller then asks the
workers in turn (1 thread, default, default, 1 thread, ...) to run the pipeline on one conversation of the demo test
split (audio decoding, tokenizer, encoders, stages II-III, ensemble) and reports the median seconds per conversation.

"busy": a second worker of the same setting runs the same conversations in a loop meanwhile, as a second
hcam-predict (or a training run) beside it would; each setting's loader runs only while that setting is measured
(the other one is stopped with SIGSTOP), so both settings meet the same competition. Ratios are default / 1 thread:
above 1 means one thread is faster. Without --model, a checkpoint with random weights and the architecture of
`make demo`'s model (--size tiny: the offline tiny audio encoder and all-MiniLM-L6-v2) or of wav2vec2-base +
roberta-base (--size base) is saved to a temporary folder; no weights are downloaded.

Results are printed and written to bench/results/threads_<size>.txt (--output to change).
"""

import argparse
import csv
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "data", "demo")
SETTINGS = {"1 thread": 1, "default": 0}  # --threads values; 0 = one per core (torch's default)


# ----------------------------------------------------------------------------------------------------- the worker
def worker(args):
    """Load the pipeline with `args.threads`, then answer "run <i>" lines with the seconds conversation i took, or
    with "loop" run the conversations forever (the busy neighbour)."""
    from hcam.trainer.predict import load_pipeline, read_manifest_conversations, resolve_threads

    threads = resolve_threads(args.threads, "cpu")
    pipe = load_pipeline(args.model, device="cpu")
    conversations = [{"dialogue_id": c["dialogue_id"],
                      "turns": [{"audio": t["audio"], "text": t["text"], "speaker": t["speaker"]} for t in c["turns"]]}
                     for c in read_manifest_conversations(args.manifest)]
    pipe(conversations[0])  # warm-up
    print(f"ready {threads}", flush=True)
    if args.loop:
        while True:
            for conversation in conversations:
                pipe(conversation)
    for line in sys.stdin:
        index = int(line.split()[1])
        started = time.perf_counter()
        pipe(conversations[index % len(conversations)])
        print(f"{time.perf_counter() - started:.6f}", flush=True)


# ------------------------------------------------------------------------------------------------- the controller
def save_model(folder, size):
    """A random-weights checkpoint of `size` ("tiny": make demo's architecture; "base") with its processor."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch
    from common import default_processor, hcam_config

    from hcam.modeling_hcam import HCAMForEmotionRecognition

    torch.manual_seed(0)
    HCAMForEmotionRecognition(hcam_config(size)).eval().save_pretrained(folder)
    default_processor().save_pretrained(folder)


def write_manifest(path, count):
    """The first `count` dialogues of the demo test split, audio paths absolute."""
    with open(os.path.join(DEMO, "test.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    keep = list(dict.fromkeys(r["dialogue_id"] for r in rows))[:count]
    rows = [{**r, "audio": os.path.join(DEMO, r["audio"])} for r in rows if r["dialogue_id"] in keep]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return len(rows) / len(keep)


def start(args, threads, loop=False):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    process = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--worker", "--threads", str(threads), "--model", args.model,
         "--manifest", args.manifest] + (["--loop"] if loop else []),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = process.stdout.readline()
    if not line.startswith("ready"):
        raise SystemExit(f"worker with --threads {threads} did not start (run it alone to see why)")
    return process, int(line.split()[1])


def ask(process, index):
    process.stdin.write(f"run {index}\n")
    process.stdin.flush()
    return float(process.stdout.readline())


def measure(args, busy):
    """{setting: [seconds per conversation]} measured alternately; with `busy`, each setting's loader runs meanwhile."""
    workers = {name: start(args, threads) for name, threads in SETTINGS.items()}
    loaders = {}
    try:
        if busy:
            loaders = {name: start(args, threads, loop=True)[0] for name, threads in SETTINGS.items()}
            for loader in loaders.values():
                loader.send_signal(signal.SIGSTOP)
        times = {name: [] for name in SETTINGS}
        for round_ in range(args.rounds):
            order = list(SETTINGS) if round_ % 2 == 0 else list(SETTINGS)[::-1]
            for name in order:
                if busy:
                    loaders[name].send_signal(signal.SIGCONT)
                    time.sleep(0.3)  # the neighbour is running before the measurement starts
                times[name].extend(ask(workers[name][0], round_ * args.conversations + k)
                                   for k in range(args.conversations))
                if busy:
                    loaders[name].send_signal(signal.SIGSTOP)
        return times, {name: threads for name, (_, threads) in workers.items()}
    finally:
        for process in [w for w, _ in workers.values()] + list(loaders.values()):
            process.send_signal(signal.SIGCONT)
            process.kill()
            process.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint folder (default: random weights, --size)")
    parser.add_argument("--size", default="tiny", choices=["tiny", "base"])
    parser.add_argument("--conversations", type=int, default=4, help="conversations per setting and round")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--output", help="default: bench/results/threads_<size>.txt")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--loop", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    given = args.model
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as folder:
        if args.model is None:
            args.model = os.path.join(folder, "model")
            save_model(args.model, args.size)
        args.manifest = os.path.join(folder, "conversations.csv")
        turns = write_manifest(args.manifest, args.conversations)
        started = datetime.now(timezone.utc)
        load_before = os.getloadavg()
        results = {condition: measure(args, busy=condition == "busy") for condition in ("idle", "busy")}
        load_after = os.getloadavg()
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [
        f"bench_threads.py, {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()}-core CPU ({cpu}), python "
        f"{platform.python_version()}; load average before {load_before[0]:.1f}, after {load_after[0]:.1f} (the "
        "machine is shared: other work runs beside it)",
        f"model: {'--model ' + given if given else args.size + ' architecture, random weights'}; "
        f"{args.conversations} demo test conversations (~{turns:.1f} turns) x {args.rounds} rounds per setting",
        "",
        f"{'condition':<10}{'setting':<12}{'threads':>8}{'median s/conv':>15}{'p90 s/conv':>12}",
    ]
    summary = {}
    for condition, (times, threads) in results.items():
        for name, values in times.items():
            values = sorted(values)
            lines.append(f"{condition:<10}{name:<12}{threads[name]:>8}{statistics.median(values):>15.3f}"
                         f"{values[int(0.9 * (len(values) - 1))]:>12.3f}")
        ratio = statistics.median(times["default"]) / statistics.median(times["1 thread"])
        summary[condition] = ratio
    lines.append("")
    for condition, ratio in summary.items():
        lines.append(f"{condition}: default / 1 thread = {ratio:.2f}x"
                     + (" (one thread is faster)" if ratio > 1 else " (the default is faster)"))
    text = "\n".join(lines)
    print(text)
    output = args.output or os.path.join(REPO, "bench", "results", f"threads_{args.size}.txt")
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    with open(os.path.splitext(output)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump({c: {"ratio_default_over_1": summary[c], "seconds": results[c][0], "threads": results[c][1]}
                   for c in results}, f, indent=1)
    print(f"written to {output}")


if __name__ == "__main__":
    sys.exit(main())
