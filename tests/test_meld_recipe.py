"""The MELD text-only CPU recipe against its reference result (SpeechBrain-style recipe test).

The full recipe's result is recorded in trainer/recipes/meld_text_cpu.json (`_reference`); this test reruns the
same recipe, both stages, on a fixed subset of the real MELD CSVs in ../shared/data/meld and checks stage 2's
validation weighted F1 against the subset reference recorded beside it (`_reference_subset`).
"""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO, "trainer", "recipes", "meld_text_cpu.json")
MELD = os.path.join(os.path.dirname(REPO), "shared", "data", "meld")


def run_stage(args, cwd):
    result = subprocess.run([sys.executable, os.path.join(REPO, "trainer", "run_stage.py"), *args], cwd=cwd,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


@pytest.mark.skipif(not os.path.isfile(os.path.join(MELD, "train_sent_emo.csv")), reason="needs ../shared/data/meld")
def test_meld_text_recipe_matches_its_subset_reference(tmp_path):
    with open(RECIPE, encoding="utf-8") as f:
        reference = json.load(f)["_reference_subset"]
    common = ["--recipe", RECIPE, "--data_dir", MELD, *reference["flags"], "--report_to", "none",
              "--disable_tqdm", "true"]
    run_stage([*common, "--stage", "1", "--modality", "text", "--output_dir", str(tmp_path / "stage1-text")], REPO)
    run_stage([*common, "--stage", "2", "--modality", "text", "--init_from", str(tmp_path / "stage1-text"),
               "--output_dir", str(tmp_path / "stage2-text")], REPO)
    with open(tmp_path / "stage2-text" / "all_results.json", encoding="utf-8") as f:
        results = json.load(f)
    measured = results["eval_text_context_weighted_f1"]
    assert measured == pytest.approx(reference["eval_text_context_weighted_f1"], abs=reference["tolerance"])
    # context must help on MELD: the subset's stage 2 beats its own stage-1 head
    assert measured > results["eval_text_utterance_weighted_f1"]
