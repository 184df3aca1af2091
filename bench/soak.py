#!/usr/bin/env python
"""Soak test (issue 25): long inputs through the pipeline and hcam-predict, with peak memory and open files.

Not part of the test suite (minutes at full size). Each case runs in a fresh process, so its peak resident memory
(ru_maxrss) is its own:

- pipeline, many conversations: the pipeline as hcam-predict runs it (audio paths, text, speakers; decode, stages
  I-III; a generator in, results out one conversation at a time) on N conversations of 8 turns (default 1,000);
- pipeline, one long conversation: one conversation of T turns (default 2,000);
- hcam-predict: the command on a manifest of M turns (default 20,000), and on M/10 turns for comparison.

Turns cycle through the demo corpus's test clips and transcripts (data/demo). The model has the demo's stage-3 shape
with random weights (the offline tiny encoders: memory and speed do not depend on the weights).

Reported: wall time, peak RSS, the RSS growth over the second half of the pipeline runs (a leak grows it), open file
descriptors at the start and the end (a leak grows them; for hcam-predict, sampled from outside while it runs).
Bars: hcam-predict's peak at M turns within 1.25x of its peak at M/10 turns (predictions are written as they are made;
the turn list itself is read into memory first, about a KiB a turn), its output holds M rows; the pipeline's RSS grows
by less than 5% of its peak over the second half; no more open files at the end than at the start.

    python bench/soak.py [--quick]     # --quick: 100 conversations, 500 turns, 2,000 turns
"""

import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

import torch

from common import default_processor, hcam_config, machine, parser, report, row

DEMO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "demo")
GROWTH_BAR = 0.05  # RSS growth over the second half of a pipeline run, as a share of its peak
CLI_BAR = 1.25  # hcam-predict's peak at M turns / its peak at M/10 turns


def demo_turns():
    with open(os.path.join(DEMO, "test.csv"), encoding="utf-8") as f:
        return [{"audio": os.path.abspath(os.path.join(DEMO, r["audio"])), "text": r["text"], "speaker": r["speaker"]}
                for r in csv.DictReader(f)]


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_files(pid="self"):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def build(folder=None):
    """A stage-3 model of the demo's shape and its processor (saved to `folder` for hcam-predict when given)."""
    from hcam.modeling_hcam import HCAMForEmotionRecognition

    torch.manual_seed(0)
    model = HCAMForEmotionRecognition(hcam_config("tiny", stage=3)).eval()
    processor = default_processor()
    if folder:
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
    return model, processor


def child(case, size):
    """One pipeline case in this (fresh) process; prints its measurements as JSON."""
    from hcam.modeling_hcam.pipeline_hcam import HCAMEmotionPipeline

    model, processor = build()
    pipe = HCAMEmotionPipeline(model=model, processor=processor, device="cpu")
    turns = demo_turns()
    if case == "many":
        conversations = [[turns[(8 * c + t) % len(turns)] for t in range(8)] for c in range(size)]
        batch_size = 8
    else:
        conversations = [[turns[t % len(turns)] for t in range(size)]]
        batch_size = 1
    pipe([{"dialogue_id": "warmup", "turns": conversations[0][:2]}], batch_size=1)
    files_before, start = open_files(), time.perf_counter()
    halfway_rss, done, labels = None, 0, 0

    def inputs():
        for index, conversation in enumerate(conversations):
            yield {"dialogue_id": f"c{index}", "turns": conversation}

    for results in pipe(inputs(), batch_size=batch_size):
        done += 1
        labels += len(results)
        if halfway_rss is None and done >= max(1, len(conversations) // 2):
            halfway_rss = rss_mib()
    seconds = time.perf_counter() - start
    end_rss = rss_mib()
    print(json.dumps({"seconds": seconds, "turns": labels, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "halfway_mib": halfway_rss, "end_mib": end_rss, "files_before": files_before,
                      "files_after": open_files()}))


def run_child(case, size, threads):
    result = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", case, str(size), "--threads",
                             str(threads)], capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"soak case {case} {size} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_predict(folder, turns, workdir, threads):
    """hcam-predict on a manifest of `turns` turns (dialogues of 10): wall time, peak RSS, open files, output rows."""
    demo = demo_turns()
    manifest = os.path.join(workdir, f"manifest-{turns}.csv")
    with open(manifest, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["dialogue_id", "turn", "speaker", "text", "audio"])
        for i in range(turns):
            turn = demo[i % len(demo)]
            writer.writerow([f"d{i // 10:05d}", i % 10, turn["speaker"], turn["text"], turn["audio"]])
    output = os.path.join(workdir, f"predictions-{turns}.jsonl")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads or os.cpu_count()))
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "hcam.trainer.predict", "--model", folder, "--manifest", manifest,
                                "--output", output, "--no_progress"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    files, stderr = [], []
    reader = threading.Thread(target=lambda: stderr.append(process.stderr.read()), daemon=True)
    reader.start()
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        count = open_files(process.pid)
        if count is not None:
            files.append(count)
        time.sleep(0.5)
    process.returncode = os.waitstatus_to_exitcode(status)
    reader.join(timeout=10)
    if process.returncode:
        raise SystemExit(f"hcam-predict on {turns} turns failed:\n{''.join(stderr)[-3000:]}")
    with open(output, encoding="utf-8") as f:
        rows = sum(1 for _ in f)
    return {"seconds": time.perf_counter() - start, "peak_mib": usage.ru_maxrss / 1024, "rows": rows,
            "files_first": files[0] if files else None, "files_max": max(files) if files else None,
            "files_last": files[-1] if files else None}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        if "--threads" in argv and int(argv[argv.index("--threads") + 1]):
            torch.set_num_threads(int(argv[argv.index("--threads") + 1]))
        return child(argv[1], int(argv[2]))
    args = parser(__doc__).parse_args(argv)
    print(f"# soak on {machine()}")
    conversations, long_turns, cli_turns = (100, 500, 2000) if args.quick else (1000, 2000, 20000)
    rows = []
    for case, size, what in (("many", conversations, f"{conversations} conversations of 8 turns"),
                             ("long", long_turns, f"one conversation of {long_turns} turns")):
        m = run_child(case, size, args.threads)
        growth = (m["end_mib"] - m["halfway_mib"]) / m["peak_mib"]
        print(f"  pipeline, {what}: {m['seconds']:.0f} s, {m['turns'] / m['seconds']:.1f} turns/s, peak RSS "
              f"{m['peak_mib']:.0f} MiB (halfway {m['halfway_mib']:.0f}, end {m['end_mib']:.0f}), open files "
              f"{m['files_before']} -> {m['files_after']}")
        rows.append(row("soak", f"pipeline, {what}", f"peak RSS {m['peak_mib']:.0f} MiB, second-half growth "
                        f"{100 * growth:+.1f}%, open files {m['files_before']} -> {m['files_after']}",
                        f"growth < {100 * GROWTH_BAR:.0f}%, no files left open",
                        growth < GROWTH_BAR and m["files_after"] <= m["files_before"] and m["turns"] == (
                            8 * size if case == "many" else size)))
    with tempfile.TemporaryDirectory() as workdir:
        folder = os.path.join(workdir, "model")
        build(folder)
        small, large = (run_predict(folder, n, workdir, args.threads) for n in (cli_turns // 10, cli_turns))
    for n, m in ((cli_turns // 10, small), (cli_turns, large)):
        print(f"  hcam-predict, {n} turns: {m['seconds']:.0f} s, peak RSS {m['peak_mib']:.0f} MiB, {m['rows']} rows, "
              f"open files first/max/last {m['files_first']}/{m['files_max']}/{m['files_last']}")
    ratio = large["peak_mib"] / small["peak_mib"]
    rows.append(row("soak", f"hcam-predict, {cli_turns} turns vs {cli_turns // 10}",
                    f"peak RSS {large['peak_mib']:.0f} / {small['peak_mib']:.0f} MiB = {ratio:.2f}x, "
                    f"{large['rows']} rows, open files max {large['files_max']} (at {cli_turns // 10} turns: "
                    f"{small['files_max']})", f"<= {CLI_BAR}x, every row, no more open files",
                    ratio <= CLI_BAR and large["rows"] == cli_turns and small["rows"] == cli_turns // 10
                    and (large["files_max"] or 0) <= (small["files_max"] or 0) + 2))
    return report(rows, args.json)


if __name__ == "__main__":
    main()
