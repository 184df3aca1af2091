"""Speech encoders as users have them: every wav2vec2-family model AutoModel builds, saved as a local "pretrained"
folder (tiny random weights + its feature extractor), becomes HCAM's stage-I audio encoder with its weights loaded
strictly, its feature-extractor settings in the processor, and a saved model that loads in a fresh process."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny import TINY_AUDIO_ENCODER_CONFIG, TINY_LABELS, minilm_processor, random_inputs
from transformers import AutoConfig, AutoModel, Wav2Vec2FeatureExtractor

from hcam.modeling_hcam import HCAMConfig, HCAMForEmotionRecognition
from hcam.processing.encoders import speech_feature_settings

COMMON = {k: v for k, v in TINY_AUDIO_ENCODER_CONFIG.items() if k != "model_type"}
FAMILIES = {
    "wav2vec2": ("Wav2Vec2Model", COMMON),
    "hubert": ("HubertModel", COMMON),
    "wavlm": ("WavLMModel", dict(COMMON, num_buckets=16, max_bucket_distance=40)),
    "data2vec-audio": ("Data2VecAudioModel", {**{k: v for k, v in COMMON.items() if k not in ("feat_extract_norm",
                                                                                              "num_conv_pos_embeddings")},
                                              "num_conv_pos_embeddings": 2, "conv_pos_kernel_size": 8}),
    "wav2vec2-conformer": ("Wav2Vec2ConformerModel", dict(COMMON, conv_depthwise_kernel_size=3)),
}
# Feature-extractor settings that differ per checkpoint (WavLM-base-plus, for one, does not normalise)
NORMALISES = {"wav2vec2": True, "hubert": True, "wavlm": False, "data2vec-audio": True, "wav2vec2-conformer": False}


def save_pretrained_encoder(folder, family, seed=0):
    """A local 'pretrained' speech encoder as a user would have it: weights, config and feature extractor."""
    torch.manual_seed(seed)
    encoder = AutoModel.from_config(AutoConfig.for_model(family, **FAMILIES[family][1]))
    encoder.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=NORMALISES[family], sampling_rate=16000).save_pretrained(folder)
    return folder


def audio_model(encoder_folder, **overrides):
    config = HCAMConfig.from_encoders(
        audio_encoder=str(encoder_folder), modalities=["audio"], gru_hidden_size=6,
        id2label=dict(enumerate(TINY_LABELS)), label2id={label: i for i, label in enumerate(TINY_LABELS)}, **overrides,
    )
    return HCAMForEmotionRecognition(config).load_pretrained_encoders().eval()


@pytest.fixture(scope="module")
def encoder_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech_encoders")
    return {family: save_pretrained_encoder(root / family, family) for family in FAMILIES}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_is_built_by_automodel_with_its_weights(family, encoder_folders):
    model = audio_model(encoder_folders[family])
    encoder = model.utterance_encoders["audio"].encoder
    assert type(encoder).__name__ == FAMILIES[family][0]
    saved = load_file(encoder_folders[family] / "model.safetensors")
    state = encoder.state_dict()
    assert set(saved) == set(state)
    for name, tensor in saved.items():
        assert torch.equal(state[name], tensor), name
    assert model.config.audio_encoder_config["model_type"] == family  # nested: a saved model needs no download
    # the convolutional feature encoder stays fixed when fine-tuning (freeze_feature_encoder defaults to True)
    assert not any(p.requires_grad for p in encoder.feature_extractor.parameters())
    inputs = {k: v for k, v in random_inputs((3, 2), samples=2400).items() if k not in ("input_ids", "text_attention_mask")}
    output = model(**inputs)
    assert output.logits.shape == (2, 3, len(TINY_LABELS)) and torch.isfinite(output.loss)


@pytest.mark.parametrize("family", ["wav2vec2", "wavlm"])
def test_processor_takes_the_encoders_feature_extractor_settings(family, encoder_folders, tmp_path):
    settings = speech_feature_settings(str(encoder_folders[family]))
    assert settings == {"sampling_rate": 16000, "do_normalize": NORMALISES[family], "padding_value": 0.0}
    assert speech_feature_settings(None)["do_normalize"] is False  # the random default encoder keeps the level
    processor = minilm_processor(**settings)
    wave = torch.linspace(-0.5, 0.5, 4000).numpy() + 0.3
    values = processor(audio=[[wave]], return_tensors="pt")["input_values"][0, 0]
    normalised = abs(float(values.mean())) < 1e-4 and abs(float(values.std()) - 1) < 1e-2
    assert normalised == NORMALISES[family]
    other_rate = tmp_path / "eight_khz"
    save_pretrained_encoder(other_rate, family)
    Wav2Vec2FeatureExtractor(sampling_rate=8000, do_normalize=True).save_pretrained(other_rate)
    assert speech_feature_settings(str(other_rate))["sampling_rate"] == 8000


def test_weights_of_another_family_are_refused_naming_the_keys(encoder_folders):
    model = HCAMForEmotionRecognition(HCAMConfig.from_encoders(
        audio_encoder=str(encoder_folders["wav2vec2"]), modalities=["audio"], gru_hidden_size=6))
    with pytest.raises(ValueError, match="rel_attn_embed") as error:  # WavLM's relative position bias
        model.load_pretrained_encoders(audio_encoder_path=str(encoder_folders["wavlm"]))
    assert "from_encoders" in str(error.value)


def test_a_checkpoint_missing_weights_is_refused_naming_them(encoder_folders, tmp_path):
    folder = save_pretrained_encoder(tmp_path / "broken", "hubert")
    weights = load_file(folder / "model.safetensors")
    dropped = sorted(k for k in weights if k.startswith("encoder.layers.1."))
    save_file({k: v for k, v in weights.items() if k not in dropped}, folder / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"encoder\.layers\.1\."):
        audio_model(folder)


def test_whisper_and_non_speech_encoders_are_refused_with_the_reason():
    whisper = dict(model_type="whisper", d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                   decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16)
    with pytest.raises(ValueError, match="30 s windows"):
        HCAMForEmotionRecognition(HCAMConfig(modalities=["audio"], audio_encoder_config=whisper))
    bert = dict(model_type="bert", hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    with pytest.raises(ValueError, match="raw waveforms"):
        HCAMForEmotionRecognition(HCAMConfig(modalities=["audio"], audio_encoder_config=bert))


FRESH_LOAD = textwrap.dedent("""
    import sys
    sys.modules["hcam"] = None  # only the saved bundle may be used
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel
    inputs = load_file(sys.argv[1])
    results = {}
    for folder in sys.argv[3:]:
        model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        assert type(model).__name__ == "HCAMForEmotionRecognition"
        with torch.no_grad():
            results[folder.rsplit("/", 1)[-1]] = model(**inputs).logits.contiguous()
        results[folder.rsplit("/", 1)[-1] + ".encoder"] = torch.tensor([len(type(model.utterance_encoders["audio"].encoder).__name__)])
    save_file(results, sys.argv[2])
""")


def test_stage1_models_of_every_family_load_in_a_fresh_process(encoder_folders, tmp_path):
    inputs = {k: v for k, v in random_inputs((2, 1), samples=2400).items()
              if k in ("input_values", "attention_mask", "utterance_mask")}
    save_file(inputs, tmp_path / "inputs.safetensors")
    expected, folders = {}, []
    for family, folder in encoder_folders.items():
        model = audio_model(folder, use_weighted_layer_sum=family == "wavlm")
        with torch.no_grad():
            expected[family] = model(**inputs).logits
        saved = tmp_path / "models" / family
        model.save_pretrained(saved)
        folders.append(str(saved))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), PYTHONPATH="")
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    result = subprocess.run([sys.executable, "-c", FRESH_LOAD, str(tmp_path / "inputs.safetensors"),
                             str(tmp_path / "outputs.safetensors"), *folders],
                            cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = load_file(tmp_path / "outputs.safetensors")
    for family in encoder_folders:
        torch.testing.assert_close(loaded[family], expected[family])
        assert int(loaded[family + ".encoder"]) == len(FAMILIES[family][0])


def test_a_fine_tuned_task_checkpoint_gives_its_base_model(tmp_path):
    """Checkpoints saved with a task head (e.g. wav2vec2-base-960h, a CTC model) load their base model; the head is
    left out, as AutoModel does."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    torch.manual_seed(3)
    ctc = Wav2Vec2ForCTC(Wav2Vec2Config(**COMMON, vocab_size=8))
    ctc.save_pretrained(tmp_path / "ctc")
    Wav2Vec2FeatureExtractor().save_pretrained(tmp_path / "ctc")
    encoder = audio_model(tmp_path / "ctc").utterance_encoders["audio"].encoder
    for name, tensor in ctc.wav2vec2.state_dict().items():
        assert torch.equal(encoder.state_dict()[name], tensor), name
