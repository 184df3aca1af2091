"""The ablation variants (issue 13): stage II without self-attention, stage III by concatenation, joint training."""

import json
import os

import pytest
import torch
import torch.nn.functional as F
from test_trainer import stage_argv, write_corpus, write_tiny_text_encoder
from tiny import random_inputs, tiny_hcam_config

from hcam.modeling_hcam import HCAMConfig, HCAMForEmotionRecognition

HEADS = ["audio_utterance", "text_utterance", "audio_context", "text_context", "fusion", "ensemble"]


def make(stage=3, seed=0, **overrides):
    torch.manual_seed(seed)
    return HCAMForEmotionRecognition(tiny_hcam_config(stage=stage, **overrides)).eval()


@pytest.mark.parametrize("overrides", [{}, {"context_self_attention": False}, {"fusion_type": "concat"},
                                       {"context_self_attention": False, "fusion_type": "concat"},
                                       {"use_speaker_masks": False}])
def test_every_variant_gives_every_head(overrides):
    model = make(**overrides)
    inputs = random_inputs(dialogue_turns=(3, 2))
    output = model(**inputs)
    for head in HEADS[:-1]:
        assert getattr(output, f"{head}_logits").shape == (2, 3, 4), head
    assert output.logits.shape == (2, 3, 4) and torch.isfinite(output.loss)


def test_gru_only_stage2_has_no_attention_and_says_so():
    names = [n for n, _ in make(stage=2, context_self_attention=False).named_parameters() if n.startswith("context")]
    assert names and not [n for n in names if "attention" in n or "layer_norm" in n], names
    full = [n for n, _ in make(stage=2).named_parameters() if n.startswith("context")]
    assert [n for n in full if ".attention." in n]  # the default still has it
    with pytest.raises(ValueError, match="context_self_attention=False"):
        make(stage=2, context_self_attention=False)(**random_inputs(), output_attentions=True)


def test_concat_fusion_has_no_co_attention():
    names = [n for n, _ in make(fusion_type="concat").named_parameters() if n.startswith("fusion.")]
    assert sorted({n.split(".")[1] for n in names}) == ["audio_projection", "classifier", "fully_connected",
                                                       "text_projection"]
    default = {n.split(".")[1] for n, _ in make().named_parameters() if n.startswith("fusion.")}
    assert {"audio_to_text", "text_to_audio", "norms"} <= default
    with pytest.raises(ValueError, match="fusion_type"):
        tiny_hcam_config(stage=3, fusion_type="sum")


@pytest.mark.parametrize("overrides", [{"context_self_attention": False}, {"fusion_type": "concat"},
                                       {"joint_training": True}])
def test_options_round_trip_through_save_and_load(tmp_path, overrides):
    model = make(**overrides)
    model.save_pretrained(tmp_path)
    loaded = HCAMForEmotionRecognition.from_pretrained(tmp_path).eval()
    for key, value in overrides.items():
        assert getattr(loaded.config, key) == value
    inputs = random_inputs()
    torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits)
    old = json.loads((tmp_path / "config.json").read_text())
    for key in ("context_self_attention", "fusion_type", "joint_training"):
        old.pop(key)  # a checkpoint saved before these options existed loads with today's behaviour
    config = HCAMConfig.from_dict(old)
    assert (config.context_self_attention, config.fusion_type, config.joint_training) == (True, "co-attention", False)


def test_joint_loss_is_every_head_plus_the_contrastive_loss():
    model = make(joint_training=True, supcon_weight=0.5)
    inputs = random_inputs()
    output = model(**inputs)
    labels = inputs["labels"].masked_fill(~inputs["utterance_mask"].bool(), -100)
    expected = torch.stack([F.cross_entropy(getattr(output, f"{h}_logits").flatten(0, 1), labels.flatten())
                            for h in HEADS[:-1]]).mean()
    torch.testing.assert_close(output.classification_loss, expected)
    torch.testing.assert_close(output.loss, expected + 0.5 * output.contrastive_loss)
    hierarchical = make(supcon_weight=0.5)(**inputs)  # stage 3 alone: the fusion head, no contrastive loss
    assert hierarchical.contrastive_loss is None
    torch.testing.assert_close(hierarchical.loss, F.cross_entropy(hierarchical.fusion_logits.flatten(0, 1),
                                                                  labels.flatten()))


# ----- through run_stage.py ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablation")
    corpus, encoder = str(root / "corpus"), str(root / "tiny_bert")
    write_corpus(corpus, dialogues={"train": 6, "validation": 2, "test": 2}, turns=3)
    write_tiny_text_encoder(encoder)
    return {"corpus": corpus, "encoder": encoder, "out": str(root / "runs")}


def read(folder, name):
    with open(os.path.join(folder, name), encoding="utf-8") as f:
        return json.load(f)


def test_stage_flags_reach_the_saved_configs(corpus):
    from hcam.trainer.run_stage import main

    out, plain = corpus["out"], ["--cross_fit_folds", "0"]
    for name, extra in (("stage1-audio", []), ("stage1-text", []),
                        ("stage2-audio", [*plain, "--context_self_attention", "false"]),
                        ("stage2-text", [*plain, "--context_self_attention", "false"]),
                        ("stage3", [*plain, "--fusion_type", "concat"])):
        main(stage_argv(out, name, corpus["corpus"], corpus["encoder"], epochs=1, extra=extra))
    assert read(f"{out}/stage1-audio", "config.json")["context_self_attention"] is True
    for name in ("stage2-audio", "stage2-text", "stage3"):
        assert read(f"{out}/{name}", "config.json")["context_self_attention"] is False, name
    assert read(f"{out}/stage3", "config.json")["fusion_type"] == "concat"
    loaded = HCAMForEmotionRecognition.from_pretrained(f"{out}/stage3")
    assert not hasattr(loaded.fusion, "audio_to_text") and not hasattr(loaded.context_encoders["text"], "attention")
    with pytest.raises(SystemExit, match="stage-2 setting"):
        main(stage_argv(out, "stage3", corpus["corpus"], corpus["encoder"], epochs=1,
                        extra=[*plain, "--context_self_attention", "true", "--output_dir", f"{out}/stage3b"]))


def test_joint_training_trains_every_stage_end_to_end(corpus):
    from hcam.trainer.run_stage import main

    out = f"{corpus['out']}/joint"
    argv = stage_argv(corpus["out"], "stage3", corpus["corpus"], corpus["encoder"], epochs=1,
                      extra=["--output_dir", out, "--audio_encoder_learning_rate", "1e-3"])
    at = argv.index("--init_from")
    argv = [*argv[:at], "--joint_training", "--text_encoder", corpus["encoder"], *argv[at + 3:]]
    marker = main(argv)
    assert marker["stage"] == 3 and marker["init_from"] == []
    config = read(out, "config.json")
    assert config["joint_training"] is True and config["modalities"] == ["audio", "text"]
    results = read(out, "all_results.json")
    for prefix in ("eval", "test"):
        for head in HEADS:
            assert f"{prefix}_{head}_weighted_f1" in results, (prefix, head)
    # nothing was frozen: the text encoder moved from its pretrained start along with the heads
    from safetensors.torch import load_file

    start = load_file(os.path.join(corpus["encoder"], "model.safetensors"))
    trained = HCAMForEmotionRecognition.from_pretrained(out).utterance_encoders["text"].encoder.state_dict()
    moved = [k for k, v in start.items() if k in trained and not torch.allclose(v, trained[k])]
    assert moved, "the text encoder did not train"
    with pytest.raises(SystemExit, match="--joint_training"):
        main([*argv[:argv.index("--joint_training")], "--init_from", "a", "b", *argv[argv.index("--joint_training"):]])


def test_joint_training_of_one_modality_is_a_stage2_model_trained_end_to_end(corpus):
    """A text-only corpus's non-hierarchical row: `--stage 2 --modality text --joint_training` (no audio read)."""
    from hcam.trainer.run_stage import main

    out = f"{corpus['out']}/joint-text"
    argv = stage_argv(corpus["out"], "stage1-text", corpus["corpus"], corpus["encoder"], epochs=1,
                      extra=["--output_dir", out])
    argv[argv.index("--stage") + 1] = "2"
    marker = main([*argv, "--joint_training"])
    assert marker["stage"] == 2 and marker["init_from"] == []
    config = read(out, "config.json")
    assert config["joint_training"] is True and config["modalities"] == ["text"] and config["num_stages"] == 2
    results = read(out, "all_results.json")
    assert {"eval_text_utterance_weighted_f1", "eval_text_context_weighted_f1",
            "test_ensemble_weighted_f1"} <= set(results) and not [k for k in results if "audio" in k]
    model = HCAMForEmotionRecognition.from_pretrained(out)
    from safetensors.torch import load_file

    start = load_file(os.path.join(corpus["encoder"], "model.safetensors"))
    trained = model.utterance_encoders["text"].encoder.state_dict()
    assert [k for k, v in start.items() if k in trained and not torch.allclose(v, trained[k])], "encoder did not train"
    with pytest.raises(SystemExit, match="--joint_training"):
        main([*stage_argv(corpus["out"], "stage1-text", corpus["corpus"], corpus["encoder"], epochs=1,
                          extra=["--output_dir", f"{out}-1"]), "--joint_training"])


# ----- bench/ablation.py ------------------------------------------------------------------------------------------
def ablation_module():
    import importlib
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
    return importlib.import_module("ablation")


def test_joint_run_gets_the_stage1_epoch_budget_and_rates():
    ablation = ablation_module()
    flags = ablation.joint_flags(ablation.RECIPE)  # the demo recipe: stage I audio 4 epochs at 1e-3, text 3
    value = {flags[i]: flags[i + 1] for i in range(1, len(flags) - 1, 2)}
    assert flags[0] == "--joint_training" and value["--num_train_epochs"] == "4"
    assert value["--audio_encoder_learning_rate"] == "0.001" and value["--encoder_learning_rate"] == "3e-05"


def fake_run(folder, scores, runtime=10.0):
    os.makedirs(folder)
    with open(os.path.join(folder, "hcam_stage.json"), "w") as f:
        json.dump({"stage": 3}, f)
    values = {"train_runtime": runtime}
    for prefix, shift in (("eval", 0.0), ("test", 0.1)):
        values.update({f"{prefix}_{head}_weighted_f1": score + shift for head, score in scores.items()})
    with open(os.path.join(folder, "all_results.json"), "w") as f:
        json.dump(values, f)


def test_ablation_table_is_mean_and_std_over_the_finished_seeds(tmp_path, capsys):
    ablation = ablation_module()
    for seed, score in ((1, 0.5), (2, 0.7)):
        scores = {head: score for head in HEADS}
        scores["audio_utterance"] = 0.2
        for tag in ("stage2-audio", "stage2-text", "stage3"):
            fake_run(str(tmp_path / "full" / f"seed{seed}" / tag), scores)
        fake_run(str(tmp_path / "joint" / f"seed{seed}" / "stage3"), {head: score - 0.1 for head in HEADS}, 100.0)
    summary = ablation.main(["--output_dir", str(tmp_path), "--seeds", "1", "2", "--report_only"])
    table = summary["table"]
    assert table["full"]["n"] == 2 and table["joint"]["n"] == 2 and "no-supcon" not in table
    assert table["full"]["validation_ensemble"] == pytest.approx((0.6, 0.1414), abs=1e-4)
    assert table["joint"]["test_fusion"] == pytest.approx((0.6, 0.1414), abs=1e-4)
    assert table["full"]["train_seconds_per_seed"] == 30.0 and table["joint"]["train_seconds_per_seed"] == 100.0
    assert table["full, audio_utterance head alone"]["validation_fusion"] == pytest.approx((0.2, 0.0))
    assert table["full, audio_utterance head alone"]["validation_ensemble"] == (None, None)
    assert "full, audio_utterance head alone" in capsys.readouterr().out
    assert json.load(open(tmp_path / "ablation.json"))["table"]["joint"]["n"] == 2
    text_only = ablation.main(["--output_dir", str(tmp_path), "--seeds", "1", "--modalities", "text", "--report_only"])
    assert text_only["final_head"] == "text_context" and "joint" not in text_only["table"]
    fake_run(str(tmp_path / "joint" / "seed1" / "stage2-text"), {head: 0.3 for head in HEADS})  # text-only joint
    text_only = ablation.main(["--output_dir", str(tmp_path), "--seeds", "1", "--modalities", "text", "--report_only"])
    assert text_only["table"]["joint"]["validation_text_context"] == pytest.approx((0.3, 0.0))
    assert "concat-fusion" not in text_only["table"]
    flags = ablation.joint_flags(ablation.RECIPE, ["text"])  # text alone: stage I text's 3 epochs, not audio's 4
    assert flags[flags.index("--num_train_epochs") + 1] == "3" and "--audio_encoder_learning_rate" not in flags
