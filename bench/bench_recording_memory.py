"""Peak memory and wall time of the whole recording path (turns, speakers, ASR, HCAM: `predict_recording`) at several
recording lengths, for this checkout and, side by side in the same run, an earlier revision of the code.

Each (revision, recording) runs in a fresh process; its peak resident set size (getrusage ru_maxrss) is what the
path needed. The rows each run predicts are compared with the first revision's: the same turns, labels and
probabilities (to 1e-6) mean the runs did the same work.

    git worktree add /tmp/hcam-before d8ec89d          # the code before lazy turn audio
    python bench/make_recordings.py --out /tmp/long13 --seed 1 --speakers 3 --minutes 10
    python bench/make_recordings.py --out /tmp/long80 --seed 1 --speakers 3 --minutes 80
    python bench/bench_recording_memory.py --model runs/demo/stage3 --before /tmp/hcam-before \
        --recordings /tmp/long13/flite001_00_3spk.wav /tmp/long80/flite001_00_3spk.wav --json memory.json

Needs pip install "hcam[recordings,asr]" (make setup installs them).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

SOURCE_FOLDERS = ["modeling_hcam", "processing", "trainer", "hub_cards"]
CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[4]))
import hcam.trainer.recordings as recordings
from hcam.trainer.predict import load_pipeline
pipe = load_pipeline(sys.argv[2])
started = time.perf_counter()
rows = recordings.predict_recording(sys.argv[1], pipe, asr=sys.argv[3])
seconds = time.perf_counter() - started
print(json.dumps({"code": recordings.__file__, "seconds": seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rows": [[r["start"], r["end"], r["speaker"], r["label"], r["text"],
                            [round(p, 6) for p in r["probabilities"].values()]] for r in rows]}))
"""


def shadow_package(source: Path, folder: Path) -> Path:
    """A folder holding an `hcam` package whose subpackages are `source`'s folders (an earlier checkout), to put first
    on PYTHONPATH so that it is imported instead of the installed hcam."""
    package = folder / "hcam"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name in SOURCE_FOLDERS:
        if not (source / name).is_dir():
            raise SystemExit(f"--before {source}: no {name}/ folder there; give an hcam checkout")
        (package / name).symlink_to((source / name).resolve(), target_is_directory=True)
    return folder


def run(recording, model, asr, threads, pythonpath=None):
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    result = subprocess.run([sys.executable, "-c", CHILD, str(recording), str(model), asr, str(threads)], env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"the run on {recording} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def same_rows(a, b):
    """Whether two runs predicted the same rows (turns, speakers, labels, transcripts; probabilities to 1e-6), and
    how many rows differ in turn, label, transcript, and the largest probability difference."""
    if len(a) != len(b):
        return False, {"rows": [len(a), len(b)]}
    differences = {"turn or speaker": sum(x[:3] != y[:3] for x, y in zip(a, b)),
                   "label": sum(x[3] != y[3] for x, y in zip(a, b)), "text": sum(x[4] != y[4] for x, y in zip(a, b)),
                   "max probability difference": max(abs(p - q) for x, y in zip(a, b) for p, q in zip(x[5], y[5]))}
    same = not any(differences[k] for k in ("turn or speaker", "label", "text")) and \
        differences["max probability difference"] <= 1e-6 + 1e-12
    return same, differences


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a trained HCAM checkpoint (folder or Hub id)")
    parser.add_argument("--recordings", nargs="+", required=True, help="recording files, e.g. of two lengths")
    parser.add_argument("--before", help="a checkout of the code to compare with (git worktree add DIR REV)")
    parser.add_argument("--asr", default="whisper", choices=["whisper", "pocketsphinx", "none"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--rows", help="also write each run's predicted rows to this folder (JSON)")
    args = parser.parse_args(argv)
    import soundfile

    results = []
    with tempfile.TemporaryDirectory(prefix="hcam-memory-") as scratch:
        versions = [("this checkout", None)]
        if args.before:
            versions.insert(0, (f"before ({Path(args.before).name})", shadow_package(Path(args.before), Path(scratch))))
        for recording in args.recordings:
            minutes = soundfile.info(str(recording)).duration / 60
            first = None
            for name, pythonpath in versions:
                load = " ".join(f"{x:.2f}" for x in os.getloadavg())
                out = run(recording, args.model, args.asr, args.threads, pythonpath)
                row = {"code": name, "recording": Path(recording).name, "minutes": round(minutes, 2),
                       "turns": len(out["rows"]), "seconds": round(out["seconds"], 1),
                       "peak_rss_mb": round(out["peak_rss_mb"]), "load_before": load, "module": out["code"]}
                first = first or out["rows"]
                row["same_rows_as_first"], row["differences_from_first"] = same_rows(first, out["rows"])
                if args.rows:
                    Path(args.rows).mkdir(parents=True, exist_ok=True)
                    Path(args.rows, f"{Path(recording).stem}.{len(results)}.json").write_text(json.dumps(out["rows"]))
                results.append(row)
                print(json.dumps(row), flush=True)
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip()
    report = {"command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "revision": revision,
              "machine": f"{os.cpu_count()}-core {platform.machine()}, torch threads {args.threads}",
              "results": results}
    print(f"{'code':<28}{'minutes':>8}{'turns':>7}{'seconds':>9}{'peak RSS MB':>13}  same rows")
    for r in results:
        print(f"{r['code']:<28}{r['minutes']:>8.1f}{r['turns']:>7}{r['seconds']:>9.1f}{r['peak_rss_mb']:>13}  "
              f"{r['same_rows_as_first']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
