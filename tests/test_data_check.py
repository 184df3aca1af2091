"""The data-check command, run in a subprocess on fake trees."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from hcam.processing.data_check import main


def make_tree(root: Path, with_problems: bool) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for d in range(3):
        for t in range(3):
            name = f"audio/d{d}_t{t}.wav"
            (root / "audio").mkdir(exist_ok=True)
            sf.write(str(root / name), (0.1 * rng.standard_normal(1600 * (t + 1))).astype(np.float32), 16000)
            rows.append([f"dlg{d}", t, "AB"[t % 2], f"utterance {d}.{t}", name, ["happy", "sad"][t % 2]])
    if with_problems:
        rows.append(["dlg9", 0, "A", "where is my audio", "audio/absent.wav", "happy"])
        rows.append(["dlg9", 1, "B", "", "audio/d0_t0.wav", "sad"])
        sf.write(str(root / "audio" / "quiet.wav"), np.zeros(1600, dtype=np.float32), 16000)
        rows.append(["dlg9", 2, "B", "so quiet", "audio/quiet.wav", "sad"])
    with open(root / "train.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["dialogue_id", "turn", "speaker", "text", "audio", "label"])
        writer.writerows(rows)
    return root


def run_check(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "hcam.processing.data_check", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_data_check_reports_counts_and_every_problem(tmp_path):
    root = make_tree(tmp_path / "bad", with_problems=True)
    out = run_check("--dataset_name", "manifest", "--data_dir", str(root), "--check_audio",
                    "--json_report", str(tmp_path / "report.json"))
    assert out.returncode == 1, out.stderr
    text = out.stdout
    # every turn of dlg9 is skipped; no validation file: one of the 3 dialogues left is held out, as training would
    assert "train: 6 utterances, 2 dialogues, 2 speakers" in text and "validation: 3 utterances, 1 dialogues" in text
    assert "1 of 3 training dialogues held out by dialogue" in text
    assert "happy" in text and "sad" in text and "duration:" in text
    assert "[missing_audio] train/dlg9#0" in text and "absent.wav" in text
    assert "[empty_text] train/dlg9#1" in text
    assert "[silent_audio] train/dlg9#0" in text and "quiet.wav" in text  # turns renumbered after skips
    report = json.loads((tmp_path / "report.json").read_text())
    counts = [report["counts"][split] for split in ("train", "validation")]
    assert {label: sum(c.get(label, 0) for c in counts) for label in ("happy", "sad")} == {"happy": 6, "sad": 3}
    assert sorted(p["kind"] for p in report["problems"]) == ["empty_text", "missing_audio", "silent_audio"]
    assert max(report["durations"][split]["max_s"] for split in ("train", "validation")) == 0.3


def test_data_check_clean_tree_and_unreadable_input(tmp_path, capsys):
    root = make_tree(tmp_path / "good", with_problems=False)
    out = run_check("--dataset_name", "manifest", "--train_file", str(root / "train.csv"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Problems: none" in out.stdout
    assert main(["--dataset_name", "manifest", "--train_file", str(tmp_path / "nope.csv")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "odd.csv").write_text("conv,turn,text,label\nc,0,hi,sad\n")
    assert main(["--dataset_name", "manifest", "--train_file", str(tmp_path / "odd.csv")]) == 2
    assert main(["--dataset_name", "manifest", "--train_file", str(tmp_path / "odd.csv"),
                 "--dialogue_id_column", "conv"]) == 0


def test_console_script_is_installed(tmp_path):
    script = Path(sys.executable).with_name("hcam-data-check")
    if not script.exists():
        import pytest

        pytest.skip("console script not installed in this environment")
    root = make_tree(tmp_path / "good", with_problems=False)
    out = subprocess.run([str(script), "--dataset_name", "manifest", "--data_dir", str(root), "--text_only"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "train: 6 utterances" in out.stdout and "validation: 3 utterances" in out.stdout
