"""HCAM model tests on tiny configurations."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tiny import TINY_LABELS, random_inputs, tiny_hcam_config

from hcam.modeling_hcam import HCAMConfig, HCAMForEmotionRecognition, SupervisedContrastiveLoss

HEAD_NAMES = ["audio_utterance", "text_utterance", "audio_context", "text_context", "fusion"]
COMBINATIONS = [(1, ("audio",)), (1, ("text",)), (1, ("audio", "text")), (2, ("audio",)), (2, ("text",)),
                (2, ("audio", "text")), (3, ("audio", "text"))]


def make_model(stage=1, modalities=("audio", "text"), seed=0, **overrides):
    torch.manual_seed(seed)
    return HCAMForEmotionRecognition(tiny_hcam_config(stage, modalities, **overrides)).eval()


@pytest.mark.parametrize("stage,modalities", COMBINATIONS)
def test_output_shapes_for_every_stage_and_modality(stage, modalities):
    model = make_model(stage, modalities)
    inputs = random_inputs((3, 2))
    output = model(**inputs)
    assert output.logits.shape == (2, 3, len(TINY_LABELS))
    expected_heads = set(model.config.stage_heads())
    for head in HEAD_NAMES:
        logits = getattr(output, f"{head}_logits")
        assert (logits is not None) == (head in expected_heads), head
        if logits is not None:
            assert logits.shape == (2, 3, len(TINY_LABELS))
    for modality in ("audio", "text"):
        embeddings = getattr(output, f"{modality}_embeddings")
        assert (embeddings is not None) == (modality in modalities)
        if embeddings is not None:
            assert embeddings.shape == (2, 3, model.config.utterance_embedding_size)
            assert torch.all(embeddings[1, 2] == 0)  # padded turn
    assert torch.allclose(output.logits.exp().sum(-1), torch.ones(2, 3), atol=1e-5)
    assert output.loss is not None and torch.isfinite(output.loss)


def test_ensemble_is_mean_of_head_probabilities():
    model = make_model(3)
    output = model(**random_inputs())
    heads = [getattr(output, f"{h}_logits").softmax(-1) for h in HEAD_NAMES]
    assert torch.allclose(output.logits.exp(), torch.stack(heads).mean(0), atol=1e-6)
    model.config.ensemble_stages = ["fusion"]
    assert torch.allclose(model(**random_inputs()).logits.exp(), output.fusion_logits.softmax(-1), atol=1e-6)


def unpadded_reference(model, inputs, dialogue, turn):
    """The outputs of one dialogue alone, with no padding anywhere."""
    n = int(inputs["utterance_mask"][dialogue].sum())
    samples = [int(inputs["attention_mask"][dialogue, t].sum()) for t in range(n)]
    tokens = [int(inputs["text_attention_mask"][dialogue, t].sum()) for t in range(n)]
    # each utterance alone through stage I (no sample or token padding at all)
    embeddings = {}
    for modality, key, lengths in (("audio", "input_values", samples), ("text", "input_ids", tokens)):
        rows = []
        for t in range(n):
            values = inputs[key][dialogue, t, : lengths[t]][None, None]
            rows.append(model.get_utterance_embeddings(**{key: values}, modalities=[modality])[modality][0, 0])
        embeddings[modality] = torch.stack(rows)[None]
    output = model(audio_embeddings=embeddings["audio"], text_embeddings=embeddings["text"],
                   speaker_ids=inputs["speaker_ids"][dialogue : dialogue + 1, :n])
    return output, embeddings


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_padding_changes_no_unpadded_output(stage):
    model = make_model(stage)
    inputs = random_inputs((4, 2), samples=2400, tokens=9)
    batched = model(**inputs)
    for dialogue in range(2):
        reference, embeddings = unpadded_reference(model, inputs, dialogue, None)
        n = reference.logits.shape[1]
        for modality in ("audio", "text"):
            torch.testing.assert_close(getattr(batched, f"{modality}_embeddings")[dialogue, :n],
                                       embeddings[modality][0], atol=1e-4, rtol=1e-4)
        for head in model.config.stage_heads() + [None]:
            name = f"{head}_logits" if head else "logits"
            torch.testing.assert_close(getattr(batched, name)[dialogue, :n], getattr(reference, name)[0],
                                       atol=1e-4, rtol=1e-4)


def test_extra_padded_turns_and_samples_change_nothing():
    model = make_model(3)
    inputs = random_inputs((3, 2))
    padded = {k: v for k, v in inputs.items()}
    padded["input_values"] = F.pad(inputs["input_values"], (0, 800, 0, 2))
    padded["attention_mask"] = F.pad(inputs["attention_mask"], (0, 800, 0, 2))
    padded["input_ids"] = F.pad(inputs["input_ids"], (0, 5, 0, 2))
    padded["text_attention_mask"] = F.pad(inputs["text_attention_mask"], (0, 5, 0, 2))
    padded["utterance_mask"] = F.pad(inputs["utterance_mask"], (0, 2))
    padded["speaker_ids"] = F.pad(inputs["speaker_ids"], (0, 2), value=-1)
    padded["labels"] = F.pad(inputs["labels"], (0, 2), value=-100)
    a, b = model(**inputs), model(**padded)
    torch.testing.assert_close(b.logits[:, :3], a.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.loss, a.loss, atol=1e-5, rtol=1e-5)


def test_precomputed_embeddings_match_encoders():
    model = make_model(3)
    inputs = random_inputs()
    full = model(**inputs)
    cached = model(audio_embeddings=full.audio_embeddings, text_embeddings=full.text_embeddings,
                   utterance_mask=inputs["utterance_mask"], speaker_ids=inputs["speaker_ids"], labels=inputs["labels"])
    torch.testing.assert_close(cached.logits, full.logits)
    torch.testing.assert_close(cached.loss, full.loss)


@pytest.mark.parametrize("stage,modalities", COMBINATIONS)
def test_every_trainable_parameter_of_the_active_stage_gets_a_gradient(stage, modalities):
    model = make_model(stage, modalities, use_weighted_layer_sum=True)
    model.freeze_stages_below(stage)
    model.train()
    model(**random_inputs((4, 3))).loss.backward()
    active = {id(p) for module in model.stage_modules(stage) for p in module.parameters()}
    for name, parameter in model.named_parameters():
        if id(parameter) in active:
            assert parameter.requires_grad, name
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"no gradient: {name}"
        else:
            assert not parameter.requires_grad and parameter.grad is None, f"frozen but trained: {name}"


def test_frozen_stages_stay_in_eval_mode():
    model = make_model(3)
    model.freeze_stages_below(3).train()
    assert model.fusion.training
    for module in model.stage_modules(1) + model.stage_modules(2):
        assert not any(m.training for m in module.modules())
    inputs = random_inputs()
    a, b = model(**inputs), model(**inputs)
    torch.testing.assert_close(a.audio_context_logits, b.audio_context_logits)  # no dropout below the fusion


def test_speaker_masks_use_speakers_only_when_enabled():
    inputs = random_inputs((4, 4))
    swapped = dict(inputs, speaker_ids=torch.zeros_like(inputs["speaker_ids"]))
    with_masks = make_model(2, use_speaker_masks=True)
    assert not torch.allclose(with_masks(**inputs).logits, with_masks(**swapped).logits)
    without = make_model(2, use_speaker_masks=False)
    torch.testing.assert_close(without(**inputs).logits, without(**swapped).logits)


@pytest.mark.parametrize("turns", [1, 300])
def test_dialogues_of_one_and_of_300_utterances(turns):
    model = make_model(3, encoder_chunk_size=64)
    inputs = random_inputs((turns,), samples=400, tokens=5)
    output = model(**inputs)
    assert output.logits.shape == (1, turns, len(TINY_LABELS))
    assert torch.isfinite(output.logits).all() and torch.isfinite(output.loss)


@pytest.mark.parametrize("context", ["bidirectional", "causal"])
def test_long_conversations_attend_a_block_of_turns_at_a_time(monkeypatch, context):
    """More turns than `ATTENTION_QUERY_BLOCK`: the masks are built and the attention runs a block of query turns at
    a time (an hour-long call never holds a turns x turns mask or score matrix), with the outputs of one block."""
    import hcam.modeling_hcam.modeling_hcam as modeling

    model = make_model(3, context=context)
    width = model.config.utterance_embedding_size
    generator = torch.Generator().manual_seed(0)
    inputs = dict(audio_embeddings=torch.randn(2, 40, width, generator=generator),
                  text_embeddings=torch.randn(2, 40, width, generator=generator),
                  speaker_ids=torch.randint(0, 3, (2, 40), generator=generator),
                  utterance_mask=(torch.arange(40)[None, :] < torch.tensor([[40], [33]])).long())
    built_rows = []
    masks = model._attention_masks

    def counting_masks(utterance_mask, speaker_ids, first_query=0, last_query=None):
        built = masks(utterance_mask, speaker_ids, first_query, last_query)
        built_rows.append(built[0].shape[-2])
        return built

    monkeypatch.setattr(model, "_attention_masks", counting_masks)
    monkeypatch.setattr(modeling, "ATTENTION_QUERY_BLOCK", 1000)
    with torch.no_grad():
        whole = model(**inputs)
    assert set(built_rows) == {40}
    built_rows.clear()
    monkeypatch.setattr(modeling, "ATTENTION_QUERY_BLOCK", 16)
    with torch.no_grad():
        blocks = model(**inputs)
    assert max(built_rows) == 16 and sum(built_rows) == 40 * 6  # 16 + 16 + 8 rows for each of 6 attentions
    for head in ["logits"] + [f"{h}_logits" for h in HEAD_NAMES]:
        torch.testing.assert_close(getattr(blocks, head)[:, :40], getattr(whole, head)[:, :40], atol=1e-5, rtol=1e-5)


def reference_supcon(features, labels, temperature):
    """Khosla et al.'s L_out, written with explicit loops."""
    features = F.normalize(features, dim=-1)
    losses = []
    for i in range(len(labels)):
        positives = [p for p in range(len(labels)) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(torch.exp(features[i] @ features[a] / temperature) for a in range(len(labels)) if a != i)
        losses.append(-sum(torch.log(torch.exp(features[i] @ features[p] / temperature) / denominator)
                           for p in positives) / len(positives))
    return torch.stack(losses).mean()


def test_supcon_matches_reference_implementation():
    torch.manual_seed(0)
    features, labels = torch.randn(12, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 1, 3, 0, 2, 2, 1, 0])
    for temperature in (0.07, 0.5):
        expected = reference_supcon(features, labels, temperature)
        torch.testing.assert_close(SupervisedContrastiveLoss(temperature)(features, labels).double(), expected,
                                   atol=1e-5, rtol=1e-5)
    assert SupervisedContrastiveLoss()(features[:3], torch.tensor([0, 1, 2])) == 0


def test_supcon_is_logged_apart_from_classification_in_stage_one():
    model = make_model(1, supcon_weight=0.3)
    output = model(**random_inputs((5, 4)))
    torch.testing.assert_close(output.loss, output.classification_loss + 0.3 * output.contrastive_loss)
    assert make_model(2)(**random_inputs()).contrastive_loss is None


def test_focal_loss_reduces_to_cross_entropy():
    model = make_model(2, focal_gamma=0.0)
    inputs = random_inputs()
    output = model(**inputs)
    valid = inputs["labels"] != -100
    expected = torch.stack([F.cross_entropy(getattr(output, f"{m}_context_logits")[valid], inputs["labels"][valid])
                            for m in ("audio", "text")]).mean()
    torch.testing.assert_close(output.classification_loss, expected)
    model.config.focal_gamma = 2.0
    assert model(**inputs).classification_loss < expected


def test_from_unimodal_copies_both_modalities():
    audio, text = make_model(2, ("audio",), seed=1), make_model(2, ("text",), seed=2)
    fused = HCAMForEmotionRecognition.from_unimodal(audio, text).eval()
    assert fused.config.num_stages == 3 and fused.config.modalities == ["audio", "text"]
    inputs = random_inputs()
    out, a, t = fused(**inputs), audio(**inputs), text(**inputs)
    torch.testing.assert_close(out.audio_context_logits, a.audio_context_logits)
    torch.testing.assert_close(out.text_context_logits, t.text_context_logits)
    other = make_model(2, ("text",), id2label={0: "a", 1: "b", 2: "c", 3: "d"}, label2id={"a": 0, "b": 1, "c": 2, "d": 3})
    with pytest.raises(ValueError, match="different labels"):
        HCAMForEmotionRecognition.from_unimodal(audio, other)


def test_bad_inputs_get_clear_errors():
    model = make_model(2)
    inputs = random_inputs()
    with pytest.raises(ValueError, match="prefix"):
        model(**dict(inputs, utterance_mask=torch.tensor([[0, 1, 1], [1, 1, 0]])))
    with pytest.raises(ValueError, match="input_ids"):
        model(input_values=inputs["input_values"], attention_mask=inputs["attention_mask"],
              utterance_mask=inputs["utterance_mask"])
    with pytest.raises(ValueError, match="Stage 3"):
        tiny_hcam_config(3, ("audio",))


FRESH_LOAD = textwrap.dedent("""
    import sys
    sys.modules["hcam"] = None  # the project must not be importable: only the saved bundle may be used
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig, AutoModel
    folder, inputs_file, outputs_file = sys.argv[1:4]
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(config).__name__ == "HCAMConfig" and type(model).__name__ == "HCAMForEmotionRecognition"
    assert "transformers_modules" in type(model).__module__
    with torch.no_grad():
        output = model(**load_file(inputs_file))
    save_file({"logits": output.logits.contiguous(), "fusion": output.fusion_logits.contiguous()}, outputs_file)
    try:
        AutoModel.from_pretrained(folder)
    except ValueError as error:
        assert "trust_remote_code" in str(error), error
        print("REFUSED_WITHOUT_TRUST")
""")


def test_save_and_load_in_a_fresh_process(tmp_path):
    model = make_model(3)
    folder = tmp_path / "hcam-tiny"
    model.save_pretrained(folder)
    files = sorted(p.name for p in folder.iterdir())
    assert {"config.json", "model.safetensors", "configuration_hcam.py", "modeling_hcam.py"} <= set(files)
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl"))]
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_hcam.HCAMConfig",
                                  "AutoModel": "modeling_hcam.HCAMForEmotionRecognition"}
    inputs = {k: v for k, v in random_inputs().items() if k != "labels"}
    save_file(inputs, tmp_path / "inputs.safetensors")
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), PYTHONPATH="")
    result = subprocess.run(
        [sys.executable, "-c", FRESH_LOAD, str(folder), str(tmp_path / "inputs.safetensors"),
         str(tmp_path / "outputs.safetensors")], cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "REFUSED_WITHOUT_TRUST" in result.stdout
    loaded = load_file(tmp_path / "outputs.safetensors")
    with torch.no_grad():
        expected = model(**inputs)
    torch.testing.assert_close(loaded["logits"], expected.logits)
    torch.testing.assert_close(loaded["fusion"], expected.fusion_logits)


def test_in_process_round_trip_keeps_config(tmp_path):
    model = make_model(2, ("text",), use_speaker_masks=False, focal_gamma=1.5)
    model.save_pretrained(tmp_path)
    loaded = HCAMForEmotionRecognition.from_pretrained(tmp_path).eval()
    assert loaded.config.focal_gamma == 1.5 and loaded.config.modalities == ["text"]
    assert loaded.config.id2label == model.config.id2label
    inputs = random_inputs()
    torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits)
    assert HCAMConfig.from_pretrained(tmp_path).text_encoder_config["hidden_size"] == 16


def test_configurations_saved_with_stage_load_as_num_stages(tmp_path):
    """HCAMConfig.stage was renamed num_stages (how many stages the model has; a stage being trained is
    hcam.trainer.stages.Stage): a config.json saved with "stage" still loads, with a FutureWarning, and saves the new
    name."""
    import json
    import warnings

    from hcam.modeling_hcam import HCAMConfig

    config = tiny_hcam_config(2, ("text",))
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["num_stages"] == 2 and "stage" not in saved
    saved["stage"] = saved.pop("num_stages")  # as a checkpoint saved before the rename
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.warns(FutureWarning, match="num_stages"):
        old = HCAMConfig.from_pretrained(tmp_path)
    assert old.num_stages == 2 and old.stage == 2  # the old attribute still reads it
    old.stage = 3
    assert old.num_stages == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        assert HCAMConfig(num_stages=2).num_stages == 2


def test_the_ensemble_is_one_of_the_models_heads():
    model = make_model(3)
    assert model.config.output_heads() == ["ensemble", *model.config.stage_heads()]
    output = model(**random_inputs((3, 2)))
    assert output.head_logits("ensemble") is output.logits
    assert output.head_logits("fusion") is output.fusion_logits
