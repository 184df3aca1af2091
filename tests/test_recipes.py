"""Recipes parse into valid arguments for every stage; precedence flags > recipe > stage defaults."""

import glob
import json
import os

import pytest

from hcam.trainer.arguments import parse_args

RECIPES = sorted(glob.glob(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "trainer", "recipes", "*.json")))
STAGES = {"stage1-audio": ["--stage", "1", "--modality", "audio"], "stage1-text": ["--stage", "1", "--modality", "text"],
          "stage2-audio": ["--stage", "2", "--modality", "audio", "--init_from", "a"],
          "stage2-text": ["--stage", "2", "--modality", "text", "--init_from", "t"],
          "stage3": ["--stage", "3", "--init_from", "a", "t"]}


@pytest.mark.parametrize("recipe", RECIPES, ids=os.path.basename)
def test_recipe_sections_parse(recipe, tmp_path):
    content = json.load(open(recipe))
    assert content.get("_about"), "a recipe says what it trains"
    for section, values in content["stages"].items():
        _, data_args, training_args = parse_args([*STAGES[section], "--recipe", recipe, "--output_dir", str(tmp_path / section), "--use_cpu", "true", "--bf16", "false"])
        for key, value in values.items():
            if not key.startswith("_") and hasattr(training_args, key) and key != "bf16":
                assert getattr(training_args, key) == value, (section, key)
        for key, value in content["common"].items():
            if not key.startswith("_") and hasattr(data_args, key):
                assert getattr(data_args, key) == value
        assert training_args.metric_for_best_model == "weighted_f1" and training_args.load_best_model_at_end


def test_flags_override_recipe_and_stage_defaults(tmp_path):
    recipe = [r for r in RECIPES if r.endswith("meld_text_cpu.json")][0]
    _, _, args = parse_args(["--stage", "1", "--modality", "text", "--recipe", recipe, "--output_dir", str(tmp_path), "--learning_rate", "0.01"])
    assert args.learning_rate == 0.01 and args.encoder_learning_rate == 3e-05 and args.num_train_epochs == 2
    _, _, stage2 = parse_args(["--stage", "2", "--modality", "text", "--init_from", "x", "--dataset_name", "demo", "--output_dir", str(tmp_path)])
    _, _, stage1 = parse_args(["--stage", "1", "--modality", "text", "--dataset_name", "demo", "--output_dir", str(tmp_path)])
    # a head from scratch and a fine-tuned encoder do not share one learning rate
    assert stage1.encoder_learning_rate < stage1.learning_rate
    assert stage2.num_train_epochs > stage1.num_train_epochs and stage2.early_stopping_patience


def test_refuses_bad_stage_arguments(tmp_path):
    with pytest.raises(SystemExit, match="--modality"):
        parse_args(["--stage", "1", "--dataset_name", "demo", "--output_dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="init_from"):
        parse_args(["--stage", "3", "--init_from", "a", "--dataset_name", "demo", "--output_dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="never overwrites"):
        parse_args(["--stage", "2", "--modality", "text", "--init_from", str(tmp_path), "--dataset_name", "demo", "--output_dir", str(tmp_path)])
