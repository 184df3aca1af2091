"""Frozen-encoder stage I (--freeze_audio_encoder / --freeze_text_encoder): the encoder never trains, its hidden states
are cached once on disk in fp16, epochs train the head on them, and the saved model still runs on raw input."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file
from test_encoders import audio_model, save_pretrained_encoder
from test_trainer import TINY, data_flags, write_corpus, write_tiny_text_encoder
from tiny import random_inputs, tiny_hcam_config

from hcam.modeling_hcam import HCAMForEmotionRecognition


def test_frozen_encoder_has_no_gradients_stays_in_eval_and_cached_states_give_the_same_output(tmp_path):
    folder = save_pretrained_encoder(tmp_path / "wavlm", "wavlm")
    model = audio_model(folder, use_weighted_layer_sum=True, freeze_audio_encoder=True).train()
    stage1 = model.utterance_encoders["audio"]
    assert not any(p.requires_grad for p in stage1.encoder.parameters())
    assert not stage1.encoder.training and stage1.gru.training  # no dropout in the frozen encoder, only in the head
    inputs = {k: v for k, v in random_inputs((4, 3), samples=2400).items()
              if k in ("input_values", "attention_mask", "labels")}
    # one-turn dialogues, as stage I batches them
    inputs = {k: v.flatten(0, 1)[:, None] for k, v in inputs.items()}
    keep = inputs["labels"][:, 0] != -100
    inputs = {k: v[keep] for k, v in inputs.items()}
    model.eval()
    hidden, frame_mask = stage1.encoder_hidden_states(inputs["input_values"][:, 0], inputs["attention_mask"][:, 0])
    assert hidden.shape[2] == stage1.encoder.config.num_hidden_layers + 1  # every layer for the weighted sum
    cached = model(audio_hidden_states=hidden.half()[:, None], attention_mask=frame_mask.long()[:, None],
                   labels=inputs["labels"])
    direct = model(**inputs)
    torch.testing.assert_close(cached.logits, direct.logits, atol=2e-3, rtol=2e-3)  # fp16 cache
    model.train()
    cached = model(audio_hidden_states=hidden.half()[:, None], attention_mask=frame_mask.long()[:, None],
                   labels=inputs["labels"])
    cached.loss.backward()
    assert stage1.layer_weights.grad is not None and stage1.gru.weight_ih_l0.grad is not None
    assert all(p.grad is None for p in stage1.encoder.parameters())
    with pytest.raises(ValueError, match="layers"):
        model(audio_hidden_states=hidden[:, :, 1:].half()[:, None], attention_mask=frame_mask.long()[:, None])
    with pytest.raises(ValueError, match="not both"):
        model(audio_hidden_states=hidden.half()[:, None], input_values=inputs["input_values"])


def test_text_encoder_can_be_frozen_too():
    model = HCAMForEmotionRecognition(tiny_hcam_config(1, ("text",), freeze_text_encoder=True)).train()
    assert not any(p.requires_grad for p in model.utterance_encoders["text"].encoder.parameters())
    model(**{k: v for k, v in random_inputs().items() if k in ("input_ids", "text_attention_mask", "labels")}).loss.backward()
    assert model.utterance_encoders["text"].gru.weight_ih_l0.grad is not None


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory):
    from hcam.trainer.run_stage import main

    root = tmp_path_factory.mktemp("frozen")
    corpus, encoder = str(root / "corpus"), str(root / "wavlm")
    write_corpus(corpus, dialogues={"train": 6, "validation": 2, "test": 2})
    save_pretrained_encoder(encoder, "wavlm", seed=5)
    argv = ["--stage", "1", "--modality", "audio", "--audio_encoder", encoder, "--freeze_audio_encoder", "true",
            "--use_weighted_layer_sum", "true", *data_flags(corpus), "--num_train_epochs", "3", *TINY]
    with pytest.MonkeyPatch.context() as patch:  # a cache root of this module's own
        patch.setenv("HCAM_CACHE", str(root / "hcam_cache"))
        main([*argv, "--output_dir", str(root / "runs" / "stage1-audio")])
        yield {"root": root, "encoder": encoder, "argv": argv, "out": root / "runs" / "stage1-audio",
               "cache": root / "hcam_cache" / "features"}


def test_frozen_encoder_weights_leave_training_bit_identical(frozen_run):
    saved = load_file(frozen_run["out"] / "model.safetensors")
    pretrained = load_file(os.path.join(frozen_run["encoder"], "model.safetensors"))
    prefix = "utterance_encoders.audio.encoder."
    encoder_weights = {k[len(prefix):]: v for k, v in saved.items() if k.startswith(prefix)}
    assert set(encoder_weights) == set(pretrained)
    for name, tensor in pretrained.items():
        assert torch.equal(encoder_weights[name], tensor), name
    # ... while the head did train: the layer weights start at zero
    assert saved["utterance_encoders.audio.layer_weights"].abs().sum() > 0


def test_cache_holds_every_split_in_fp16_and_is_reused(frozen_run):
    from hcam.trainer.feature_cache import FeatureStore

    folders = sorted(os.listdir(frozen_run["cache"]))
    assert [f.split("-")[0] for f in folders] == ["test", "train", "validation"], folders
    assert not [f for f in folders if ".partial" in f]
    store = FeatureStore(frozen_run["cache"] / folders[1])
    assert len(store) == 6 * 4
    first = store[0]
    assert first.dtype == torch.float16 and first.shape[1:] == (3, 16)  # frames x (2 layers + embeddings) x width
    mtimes = {f: os.path.getmtime(frozen_run["cache"] / f / "index.json") for f in folders}

    from hcam.trainer.run_stage import main

    main([*frozen_run["argv"], "--output_dir", str(frozen_run["root"] / "runs" / "again"), "--num_train_epochs", "1"])
    assert sorted(os.listdir(frozen_run["cache"])) == folders  # same key: read, not rebuilt
    assert {f: os.path.getmtime(frozen_run["cache"] / f / "index.json") for f in folders} == mtimes


def test_saved_frozen_model_runs_on_raw_audio_without_the_cache(frozen_run, tmp_path):
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(frozen_run["out"], trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(frozen_run["out"], trust_remote_code=True)
    assert processor.feature_extractor.do_normalize is False  # the WavLM folder's own setting
    corpus = frozen_run["root"] / "corpus"
    wave = str(corpus / "audio" / "test0_0.wav")
    with torch.no_grad():
        logits = model(**processor(audio=[[wave]], return_tensors="pt")).logits
    assert torch.isfinite(logits).all()
    marker = json.load(open(frozen_run["out"] / "hcam_stage.json"))
    assert marker["stage"] == 1


@pytest.mark.parametrize("recipe", ["iemocap_6class_wavlm_frozen.json", "meld_wavlm_frozen.json"])
def test_frozen_recipes_freeze_wavlm_with_the_weighted_layer_sum(recipe, tmp_path):
    from hcam.trainer.arguments import parse_args

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "trainer", "recipes", recipe)
    model_args, _, training_args = parse_args(["--stage", "1", "--modality", "audio", "--recipe", path,
                                               "--output_dir", str(tmp_path), "--use_cpu", "true", "--bf16", "false"])
    assert model_args.audio_encoder == "microsoft/wavlm-base-plus"
    assert model_args.freeze_audio_encoder is True and model_args.use_weighted_layer_sum is True


def test_stage1_with_a_local_hubert_folder_trains_a_hubert(tmp_path, monkeypatch):
    """The issue's user path: `--audio_encoder <local HuBERT folder>` fine-tuned; stage I's model is a HuBERT with
    the folder's weights, and its processor the folder's feature-extractor settings."""
    from transformers import AutoModel

    from hcam.trainer.run_stage import main

    corpus, encoder = str(tmp_path / "corpus"), str(tmp_path / "hubert")
    write_corpus(corpus, dialogues={"train": 3, "validation": 2, "test": 1})
    save_pretrained_encoder(encoder, "hubert", seed=2)
    out = tmp_path / "stage1-audio"
    monkeypatch.setenv("HCAM_CACHE", str(tmp_path / "hcam_cache"))
    main(["--stage", "1", "--modality", "audio", "--audio_encoder", encoder, *data_flags(corpus), "--num_train_epochs",
          "1", *TINY, "--output_dir", str(out)])
    model = AutoModel.from_pretrained(out, trust_remote_code=True)
    assert type(model.utterance_encoders["audio"].encoder).__name__ == "HubertModel"
    assert model.config.audio_encoder_config["model_type"] == "hubert"
    assert not os.path.exists(tmp_path / "hcam_cache" / "features")  # fine-tuned: no frozen cache
    # fine-tuned: the transformer layers moved, the convolutional feature encoder (frozen by default) did not
    saved, pretrained = load_file(out / "model.safetensors"), load_file(os.path.join(encoder, "model.safetensors"))
    prefix = "utterance_encoders.audio.encoder."
    moved = [k for k in pretrained if not torch.equal(saved[prefix + k], pretrained[k])]
    assert moved and all(not k.startswith("feature_extractor.") for k in moved)
    assert json.load(open(out / "processor_config.json"))["feature_extractor"]["do_normalize"] is True


def test_stage1_text_with_a_frozen_text_encoder_trains_on_the_cache(tmp_path, monkeypatch):
    from hcam.trainer.run_stage import main

    corpus, encoder = str(tmp_path / "corpus"), str(tmp_path / "bert")
    write_corpus(corpus, dialogues={"train": 3, "validation": 2, "test": 1})
    write_tiny_text_encoder(encoder)
    out = tmp_path / "runs" / "stage1-text"
    monkeypatch.setenv("HCAM_CACHE", str(tmp_path / "hcam_cache"))
    main(["--stage", "1", "--modality", "text", "--text_encoder", encoder, "--freeze_text_encoder", "true",
          *data_flags(corpus), "--num_train_epochs", "2", *TINY, "--output_dir", str(out)])
    caches = sorted(os.listdir(tmp_path / "hcam_cache" / "features"))
    assert [c.split("-")[:3] for c in caches] == [["test", "text", "frozen"], ["train", "text", "frozen"],
                                                   ["validation", "text", "frozen"]]
    saved, pretrained = load_file(out / "model.safetensors"), load_file(os.path.join(encoder, "model.safetensors"))
    for name, tensor in pretrained.items():
        assert torch.equal(saved["utterance_encoders.text.encoder." + name], tensor), name


def test_stage3_keeps_which_stage1_encoders_were_frozen():
    audio = HCAMForEmotionRecognition(tiny_hcam_config(2, ("audio",), freeze_audio_encoder=True))
    text = HCAMForEmotionRecognition(tiny_hcam_config(2, ("text",), freeze_text_encoder=True))
    fused = HCAMForEmotionRecognition.from_unimodal(audio, text)
    assert fused.config.freeze_audio_encoder and fused.config.freeze_text_encoder
    assert all(encoder.frozen for encoder in fused.utterance_encoders.values())
