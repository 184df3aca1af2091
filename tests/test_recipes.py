"""Recipes parse into valid arguments for every stage; precedence flags > recipe > stage defaults."""

import glob
import json
import os

import pytest

from hcam.trainer.arguments import load_recipe, parse_args

RECIPES = sorted(glob.glob(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "trainer", "recipes", "*.json")))
STAGES = {"stage1-audio": ["--stage", "1", "--modality", "audio"], "stage1-text": ["--stage", "1", "--modality", "text"],
          "stage2-audio": ["--stage", "2", "--modality", "audio", "--init_from", "a"],
          "stage2-text": ["--stage", "2", "--modality", "text", "--init_from", "t"],
          "stage3": ["--stage", "3", "--init_from", "a", "t"]}


@pytest.mark.parametrize("recipe", RECIPES, ids=os.path.basename)
def test_recipe_sections_parse(recipe, tmp_path):
    assert json.load(open(recipe)).get("_about"), "a recipe says what it trains"
    content = load_recipe(recipe)  # with the recipe it extends folded in
    for section, values in content["stages"].items():
        _, data_args, training_args = parse_args([*STAGES[section], "--recipe", recipe, "--output_dir", str(tmp_path / section), "--use_cpu", "true", "--bf16", "false"])
        for key, value in values.items():
            if not key.startswith("_") and hasattr(training_args, key) and key != "bf16":
                assert getattr(training_args, key) == value, (section, key)
        for key, value in content["common"].items():
            if not key.startswith("_") and hasattr(data_args, key):
                assert getattr(data_args, key) == value
        assert training_args.metric_for_best_model == "weighted_f1" and training_args.load_best_model_at_end


def test_a_recipe_extends_another_part_by_part(tmp_path):
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"_about": "b", "common": {"dataset_name": "demo", "seed": 1}, "stages": {
        "stage2-text": {"num_train_epochs": 30, "dropout": 0.5}, "stage3": {"dropout": 0.4}}}))
    (tmp_path / "variant").mkdir()
    variant = tmp_path / "variant" / "v.json"
    variant.write_text(json.dumps({"_about": "v", "extends": "../base.json", "common": {"context": "causal"},
                                   "stages": {"stage2-text": {"dropout": 0.3}}}))
    _, data_args, args = parse_args(["--stage", "2", "--modality", "text", "--init_from", "t", "--recipe", str(variant),
                                     "--output_dir", str(tmp_path / "o")])
    assert (args.num_train_epochs, data_args.dataset_name, args.seed) == (30, "demo", 1)
    model_args, _, args = parse_args(["--stage", "3", "--init_from", "a", "t", "--recipe", str(variant),
                                      "--output_dir", str(tmp_path / "o")])
    assert (model_args.context, model_args.dropout) == ("causal", 0.4)
    assert load_recipe(variant)["stages"]["stage2-text"] == {"num_train_epochs": 30, "dropout": 0.3}
    (tmp_path / "base.json").write_text(json.dumps({"extends": "variant/v.json"}))
    with pytest.raises(SystemExit, match="in a circle"):
        load_recipe(variant)


def test_causal_recipes_are_their_base_recipes_with_causal_context(tmp_path):
    for causal, base in (("demo_causal.json", "demo.json"), ("meld_text_causal_cpu.json", "meld_text_cpu.json")):
        paths = {os.path.basename(r): r for r in RECIPES}
        variant, original = load_recipe(paths[causal]), load_recipe(paths[base])
        assert variant["stages"] == original["stages"]
        assert variant["common"] == {**original["common"], "context": "causal"}


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


# ----- every recipe runs: one step per stage on a fake tree of its corpus, tiny local encoders for its Hub names ----
ONE_STEP = ["--max_steps", "1", "--use_cpu", "true", "--bf16", "false", "--report_to", "none", "--disable_tqdm", "true",
            "--max_train_samples", "4", "--max_eval_samples", "2", "--per_device_train_batch_size", "4",
            "--gradient_accumulation_steps", "1", "--max_audio_seconds", "1"]


@pytest.fixture(scope="module")
def fake_trees(tmp_path_factory):
    from fake_corpora import fake_iemocap, fake_meld, fake_mosi

    root = tmp_path_factory.mktemp("recipe_trees")
    return {"iemocap": fake_iemocap(root / "iemocap", dialogues_per_session=1),
            "meld": fake_meld(root / "meld", dialogues={"train": 4, "validation": 2, "test": 2}),
            "mosi": fake_mosi(root / "mosi")}


@pytest.fixture(scope="module")
def stand_in_encoders(tmp_path_factory):
    from test_readme_iemocap import encoder_overrides

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HCAM_ENCODER_OVERRIDES", json.dumps(encoder_overrides(str(tmp_path_factory.mktemp("encoders")))))
        patch.setenv("HCAM_CACHE", str(tmp_path_factory.mktemp("hcam_cache")))
        yield


@pytest.mark.parametrize("recipe", RECIPES, ids=os.path.basename)
def test_recipe_runs_one_step_per_stage(recipe, fake_trees, stand_in_encoders, tmp_path):
    from hcam.trainer.run_stage import main
    from hcam.trainer.stages import SEQUENCE

    content = load_recipe(recipe)
    corpus = content["common"]["dataset_name"]
    data = ["--data_dir", str(fake_trees[corpus])] if corpus in fake_trees else []
    ran = []
    for stage in SEQUENCE:
        if stage.tag not in content["stages"]:
            continue
        marker = main(["--recipe", recipe, *stage.argv(str(tmp_path)), *data, *ONE_STEP])
        assert marker["name"] == stage.tag and os.path.isfile(tmp_path / stage.tag / "model.safetensors")
        ran.append(stage.tag)
    assert ran == list(content["stages"]), "every section of the recipe ran, in stage order"
