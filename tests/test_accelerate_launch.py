"""`accelerate launch trainer/run_stage.py`, the README's entry point, runs a stage and writes its results."""

import json
import os
import subprocess
import sys

from test_trainer import REPO, stage_argv, write_corpus, write_tiny_text_encoder


def test_accelerate_launch_runs_a_stage(tmp_path):
    corpus, encoder, out = str(tmp_path / "corpus"), str(tmp_path / "bert"), str(tmp_path / "runs")
    write_corpus(corpus, dialogues={"train": 6, "validation": 2, "test": 2}, turns=3)
    write_tiny_text_encoder(encoder)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               os.path.join(REPO, "trainer", "run_stage.py"), *stage_argv(out, "stage1-text", corpus, encoder, epochs=1)]
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf_home"))  # no user accelerate config may change the launch
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    results = json.load(open(os.path.join(out, "stage1-text", "all_results.json")))
    assert 0.0 <= results["eval_weighted_f1"] <= 1.0 and "test_weighted_f1" in results
    assert json.load(open(os.path.join(out, "stage1-text", "hcam_stage.json")))["stage"] == 1
