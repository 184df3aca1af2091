#!/usr/bin/env python
"""Run every benchmark (each in its own process) and print one table of results.

    python bench/run_all.py [--quick] [--threads N] [--markdown results.md]

Each script prints ratios measured side by side in one run; this collects their rows. Full runs take ~3 min per
script on a 2-core CPU; --quick runs each in < 30 s.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = ["bench_inference.py", "bench_cache.py", "bench_padding.py", "bench_dialogue_length.py",
           "bench_stage1_step.py", "bench_processor.py", "bench_frozen_cache.py",
           "bench_pipeline_batch.py", "bench_asr.py", "bench_long_conversation.py"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--only", nargs="*", help="run only these scripts")
    args = parser.parse_args()
    sys.path.insert(0, HERE)
    from common import machine

    rows, failures = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for script in args.only or SCRIPTS:
            out = os.path.join(tmp, script + ".json")
            command = [sys.executable, os.path.join(HERE, script), "--json", out, "--threads", str(args.threads)]
            command += ["--quick"] if args.quick else []
            start = time.perf_counter()
            result = subprocess.run(command)
            print(f"({script}: {time.perf_counter() - start:.0f} s)", flush=True)
            if result.returncode != 0 or not os.path.exists(out):
                failures.append(script)
                continue
            with open(out) as f:
                rows += json.load(f)
    lines = [f"Machine: {machine(args.threads or None)}"
             + (" — quick mode" if args.quick else ""), "",
             "| benchmark | case | measured | bar | result |", "|---|---|---|---|---|"]
    for r in rows:
        status = "info" if r["bar"] == "(info)" else ("PASS" if r["ok"] else "**FAIL**")
        lines.append(f"| {r['benchmark']} | {r['case']} | {r['measured']} | {r['bar']} | {status} |")
    table = "\n".join(lines)
    print("\n" + table)
    if failures:
        print(f"\nScripts that crashed: {failures}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
