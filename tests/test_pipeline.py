"""The emotion-recognition-in-conversation pipeline: same numbers as the model, chunked long conversations, batches,
text-only and audio-only checkpoints, clear errors naming the turn, and a fresh process that only has the folder."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile
import torch
from tiny import TINY_LABELS, minilm_processor, save_checkpoint, tiny_hcam_config

from hcam.modeling_hcam import HCAMForEmotionRecognition
from hcam.modeling_hcam.feature_extraction_hcam import HCAMAudioError
from hcam.modeling_hcam.pipeline_hcam import TASK, HCAMEmotionPipeline, add_pipeline_to_folder

SR = 16000
KINDS = {"bimodal": (3, ("audio", "text")), "text": (2, ("text",)), "audio": (2, ("audio",))}


def tone(seconds, seed=0, sr=SR):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * (150 + 40 * seed) * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def conversation(n, seed=0, with_audio=True, with_text=True):
    turns = []
    for i in range(n):
        turn = {"speaker": "AB"[i % 2]}
        if with_audio:
            turn["audio"] = tone(0.2 + 0.05 * (i % 5), seed=seed + i)
        if with_text:
            turn["text"] = f"turn number {i} of conversation {seed}, " + "really " * (i % 4)
        turns.append(turn)
    return {"turns": turns}


@pytest.fixture(scope="module")
def processor():
    return minilm_processor(max_text_tokens=24)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, processor):
    """A saved tiny checkpoint of each kind, with the pipeline added: {kind: (model, folder)}."""
    result = {}
    for index, (kind, (stage, modalities)) in enumerate(KINDS.items()):
        folder = tmp_path_factory.mktemp(f"hcam-{kind}")
        model = save_checkpoint(folder, stage, modalities, seed=index, processor=processor, pipeline=True,
                                encoder_chunk_size=4)
        result[kind] = (model, folder)
    return result


def make_pipe(checkpoints, processor, kind):
    return HCAMEmotionPipeline(model=checkpoints[kind][0], processor=processor)


def test_add_pipeline_to_folder_registers_the_task(checkpoints):
    folder = checkpoints["bimodal"][1]
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"] == {
        TASK: {"impl": "pipeline_hcam.HCAMEmotionPipeline", "pt": ["AutoModel"], "type": "multimodal"}}
    assert {"pipeline_hcam.py", "feature_extraction_hcam.py", "processing_hcam.py", "modeling_hcam.py"} <= set(
        os.listdir(folder))
    add_pipeline_to_folder(folder)  # twice is harmless
    assert json.loads((folder / "config.json").read_text()) == config
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        add_pipeline_to_folder(folder / "nothing-here")


@pytest.mark.parametrize("kind", list(KINDS))
def test_pipeline_equals_the_model_on_the_whole_conversation(checkpoints, processor, kind):
    """Chunked stage-I encoding (4 turns at a time) gives the model's own output on the full padded conversation."""
    model, _ = checkpoints[kind]
    conv = conversation(9, with_audio=kind != "text", with_text=kind != "audio")
    results = make_pipe(checkpoints, processor, kind)(conv)
    turns = conv["turns"]
    inputs = processor(text=[t["text"] for t in turns] if kind != "audio" else None,
                       audio=[t["audio"] for t in turns] if kind != "text" else None,
                       speakers=[t["speaker"] for t in turns])
    with torch.no_grad():
        output = model(**inputs)
    expected = output.logits[0].softmax(-1).numpy()
    got = np.array([[r["probabilities"][label] for label in TINY_LABELS] for r in results])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [r["turn"] for r in results] == list(range(9))
    assert [r["speaker"] for r in results] == [t["speaker"] for t in turns]
    heads = model.config.stage_heads()
    for r, row in zip(results, expected):
        assert r["label"] == TINY_LABELS[int(row.argmax())] and r["score"] == pytest.approx(row.max(), abs=1e-5)
        assert set(r["stages"]) == set(heads)
    for head in heads:
        predicted = getattr(output, f"{head}_logits")[0].argmax(-1).tolist()
        assert [TINY_LABELS[p] for p in predicted] == [r["stages"][head] for r in results], head
    assert ("text" in results[0]) == (kind != "audio")


def test_audio_given_as_path_array_dict_and_other_rate(checkpoints, processor, tmp_path):
    pipe = make_pipe(checkpoints, processor, "audio")
    waves = [tone(0.3, seed=1), tone(0.25, seed=2)]
    soundfile.write(tmp_path / "a.wav", waves[0], SR)
    as_arrays = pipe({"turns": [{"audio": w} for w in waves]})
    mixed = pipe({"turns": [{"audio": str(tmp_path / "a.wav")}, {"audio": {"array": waves[1], "sampling_rate": SR}}]})
    for a, b in zip(as_arrays, mixed):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-4)
    resampled = pipe({"turns": [{"audio": {"array": tone(0.3, seed=1, sr=8000), "sampling_rate": 8000}},
                                {"audio": tone(0.25, seed=2, sr=22050), "sampling_rate": 22050}]})
    assert len(resampled) == 2 and all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in resampled)


@pytest.mark.parametrize("kind", list(KINDS))
def test_batched_conversations_equal_one_at_a_time(checkpoints, processor, kind):
    """batch_size pads conversations by turns and encodes their turns together: every result equals the conversation
    run alone, whatever the batch size (also with a conversation without speakers in the batch)."""
    pipe = make_pipe(checkpoints, processor, kind)
    lengths = [3, 6, 1, 9, 2]
    conversations = [conversation(n, seed=10 * i, with_audio=kind != "text", with_text=kind != "audio")
                     for i, n in enumerate(lengths)]
    for turn in conversations[1]["turns"]:
        turn.pop("speaker")  # no speaker masks for this one
    alone = [pipe(conv) for conv in conversations]
    for batch_size in (1, 2, 8):
        batched = pipe(conversations, batch_size=batch_size)
        assert [len(r) for r in batched] == lengths
        for result, expected in zip(batched, alone):
            for a, b in zip(result, expected):
                assert a["label"] == b["label"] and a["stages"] == b["stages"]
                assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)
    lazily = pipe((c for c in conversations), batch_size=2)  # a generator streams its results
    assert [len(r) for r in lazily] == lengths
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        pipe(conversations, batch_size=0)


def test_batched_errors_name_the_conversation_and_turn(checkpoints, processor):
    pipe = make_pipe(checkpoints, processor, "bimodal")
    good = conversation(3)
    silent = conversation(5, seed=1)
    silent["turns"][4]["audio"] = np.zeros(4000, dtype=np.float32)
    with pytest.raises(HCAMAudioError, match="conversation 1, turn 4 is silent"):
        pipe([good, silent], batch_size=2)
    with pytest.raises(HCAMAudioError, match="dialogue 'call-7', turn 4 is silent"):
        pipe([good, dict(silent, dialogue_id="call-7")], batch_size=2)
    with pytest.raises(ValueError, match="conversation 1, turn 0 has no audio"):
        pipe([good, {"turns": [{"text": "no audio"}]}], batch_size=2)


def test_output_attentions_are_the_models_stage2_weights(checkpoints, processor):
    model, _ = checkpoints["bimodal"]
    pipe = make_pipe(checkpoints, processor, "bimodal")
    conv = conversation(5, seed=4)
    results = pipe(conv, output_attentions=True)
    plain = pipe(conv)
    turns = conv["turns"]
    inputs = processor(text=[t["text"] for t in turns], audio=[t["audio"] for t in turns],
                       speakers=[t["speaker"] for t in turns])
    with torch.no_grad():
        output = model(**inputs, output_attentions=True)
    heads = model.config.num_attention_heads
    for modality in ("audio", "text"):
        weights = getattr(output, f"{modality}_context_attentions")
        assert weights.shape == (1, heads, 5, 5)
        torch.testing.assert_close(weights.sum(-1), torch.ones(1, heads, 5))
        got = np.array([r["attentions"][modality] for r in results])  # (turns, heads, turns)
        np.testing.assert_allclose(got.transpose(1, 0, 2), weights[0].numpy(), atol=1e-5)
        # head 2 attends only to the same speaker, head 3 only to the other speaker (and the turn itself)
        assert got[0, 1, 1] == 0 and got[0, 2, 2] == 0 and got[0, 1, 2] > 0
    for a, b in zip(results, plain):  # the explicit-weights path gives the same predictions as SDPA
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)
        assert "attentions" not in b
    stage1 = HCAMEmotionPipeline(model=HCAMForEmotionRecognition(tiny_hcam_config(1, ("text",))).eval(),
                                 processor=processor)
    with pytest.raises(ValueError, match="stage-2"):
        stage1({"turns": [{"text": "hi"}]}, output_attentions=True)


def test_300_turns_are_encoded_in_bounded_chunks(checkpoints, processor, monkeypatch):
    pipe = make_pipe(checkpoints, processor, "bimodal")
    seen, original = [], type(processor).__call__

    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        seen.append(tuple(out["utterance_mask"].shape))
        return out

    monkeypatch.setattr(type(processor), "__call__", spy)
    progress = []
    results = pipe(conversation(300, seed=3), progress=progress.append)
    assert len(results) == 300 and results[-1]["turn"] == 299
    chunk = checkpoints["bimodal"][0].config.encoder_chunk_size
    # longest turns first, at most `chunk` per encoder call, a new call when turns get much shorter (less padding)
    assert max(turns for _, turns in seen) == chunk and sum(turns for _, turns in seen) == 300
    assert len(seen) <= 300 // chunk + 2
    assert progress == [turns for _, turns in seen]


def test_transcriber_fills_missing_text(checkpoints, processor):
    pipe = make_pipe(checkpoints, processor, "text")
    calls = []

    def fake_asr(waveforms):
        calls.append(len(waveforms))
        return [f"recognised {len(w)} samples" for w in waveforms]

    turns = [{"audio": tone(0.2), "text": "I was there."}, {"audio": tone(0.3, seed=1)}]
    results = pipe({"turns": turns}, transcriber=fake_asr)
    assert calls == [1]
    assert [r["text"] for r in results] == ["I was there.", f"recognised {int(0.3 * SR)} samples"]
    assert [r["text_source"] for r in results] == ["given", "asr"]
    # one call for every untranscribed turn of a batch of conversations
    batched = pipe([{"turns": turns}, {"turns": turns[1:]}, {"turns": turns[:1]}], transcriber=fake_asr, batch_size=3)
    assert calls == [1, 2] and batched[1][0]["text"] == results[1]["text"]
    # nothing recognised (silence, noise): read as "[inaudible]" and flagged, not dropped
    empty = pipe({"turns": [{"audio": tone(0.2)}]}, transcriber=lambda waves: [""])
    assert empty[0]["text"] == "[inaudible]" and empty[0]["text_source"] == "asr:empty"


def test_bad_input_names_the_turn(checkpoints, processor, tmp_path):
    bimodal, text_only = make_pipe(checkpoints, processor, "bimodal"), make_pipe(checkpoints, processor, "text")
    good = {"audio": tone(0.2), "text": "fine"}
    with pytest.raises(HCAMAudioError, match=r"turn 1: .*not found.*missing\.wav"):
        bimodal({"turns": [good, {"audio": str(tmp_path / "missing.wav"), "text": "hello"}]})
    with pytest.raises(ValueError, match="turn 2 has empty text.*transcriber"):
        text_only({"turns": [{"text": "a"}, {"text": "b"}, {"text": "  "}]})
    with pytest.raises(ValueError, match="turn 1 has no audio"):
        bimodal({"turns": [good, {"text": "no audio here"}]})
    # turn 9 sits in the third chunk of 4: the error must still say turn 9, not the processor's chunk-local number
    turns = [dict(good) for _ in range(12)]
    turns[9] = {"audio": np.zeros(4000, dtype=np.float32), "text": "silence"}
    with pytest.raises(HCAMAudioError, match="turn 9 is silent"):
        bimodal({"turns": turns})
    with pytest.raises(ValueError, match='"turns"'):
        bimodal([good, good][0])
    with pytest.raises(ValueError, match="non-empty list"):
        bimodal({"turns": []})


FRESH = textwrap.dedent("""
    import sys
    sys.modules["hcam"] = None  # only the saved folder may be used
    import json
    import numpy as np
    from transformers import pipeline
    folders, audio_files, out_file = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
    results = {}
    for kind, folder in folders.items():
        pipe = pipeline("emotion-recognition-in-conversation", model=folder, trust_remote_code=True)
        assert type(pipe).__name__ == "HCAMEmotionPipeline" and "transformers_modules" in type(pipe).__module__
        turns = [{"audio": path, "text": f"line {i}", "speaker": "AB"[i % 2]} for i, path in enumerate(audio_files)]
        results[kind] = pipe({"turns": turns})
        batch = pipe([{"turns": turns[:2]}, {"turns": turns}])
        assert [len(r) for r in batch] == [2, len(turns)]
        on_cpu = pipeline("emotion-recognition-in-conversation", model=folder, trust_remote_code=True, device="cpu",
                          batch_size=2)
        assert on_cpu.device.type == "cpu"
        assert [[t["label"] for t in r] for r in on_cpu([{"turns": turns[:2]}, {"turns": turns}])] == [
            [t["label"] for t in r] for r in batch]
        assert pipeline(model=folder, trust_remote_code=True).task == "emotion-recognition-in-conversation"
    try:
        pipeline("emotion-recognition-in-conversation", model=folders["text"])
    except ValueError as error:
        assert "trust_remote_code" in str(error), error
        results["refused"] = True
    json.dump(results, open(out_file, "w"))
""")


def test_pipeline_in_a_fresh_process_from_the_folder_alone(checkpoints, processor, tmp_path):
    audio_files = []
    for i in range(5):
        path = tmp_path / f"turn{i}.wav"
        soundfile.write(path, tone(0.2 + 0.1 * i, seed=i), SR)
        audio_files.append(str(path))
    folders = {kind: str(folder) for kind, (_, folder) in checkpoints.items()}
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    env.pop("PYTHONPATH", None)
    result = subprocess.run([sys.executable, "-c", FRESH, json.dumps(folders), json.dumps(audio_files),
                             str(tmp_path / "out.json")], cwd=workdir, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = json.loads((tmp_path / "out.json").read_text())
    assert fresh.pop("refused") is True
    for kind in KINDS:
        turns = [{"audio": path, "text": f"line {i}", "speaker": "AB"[i % 2]} for i, path in enumerate(audio_files)]
        expected = make_pipe(checkpoints, processor, kind)({"turns": turns})
        assert len(fresh[kind]) == 5
        for a, b in zip(fresh[kind], expected):
            assert a["label"] == b["label"] and a["stages"] == b["stages"]
            assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)


def test_a_conversation_as_a_list_of_turns_and_batches_of_them(checkpoints, processor):
    """README's `erc(conversations)  # one list of turns per conversation` works as written; `[]` gives `[]`."""
    pipe = make_pipe(checkpoints, processor, "bimodal")
    first, second = conversation(3, seed=1), conversation(2, seed=2)
    as_dicts = pipe([first, second])
    assert pipe([first["turns"], second["turns"]]) == as_dicts  # a list of lists of turns: a batch
    assert pipe(first["turns"]) == as_dicts[0]  # one list of turns: one conversation
    lazily = list(pipe((c for c in [first["turns"], second]), batch_size=2))  # a generator, two per forward pass
    assert [[t["label"] for t in r] for r in lazily] == [[t["label"] for t in r] for r in as_dicts]
    for got, want in zip(lazily, as_dicts):
        for a, b in zip(got, want):
            assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)
    assert pipe([]) == []


def test_top_k_and_function_to_apply_as_in_text_classification(checkpoints, processor):
    pipe = make_pipe(checkpoints, processor, "bimodal")
    conv = conversation(3, seed=5)
    plain = pipe(conv)
    assert all("scores" not in r for r in plain)
    top2 = pipe(conv, top_k=2)
    every = pipe(conv, top_k=None)
    logits = pipe(conv, function_to_apply="none", top_k=None)
    sigmoid = pipe(conv, function_to_apply="sigmoid")
    for base, two, all_, raw, sig in zip(plain, top2, every, logits, sigmoid):
        for result in (two, all_, raw, sig):  # today's fields, same label and probabilities
            assert result["label"] == base["label"] and result["probabilities"] == base["probabilities"]
        ranked = sorted(base["probabilities"].items(), key=lambda kv: -kv[1])
        assert [s["label"] for s in two["scores"]] == [label for label, _ in ranked[:2]]
        assert [s["score"] for s in all_["scores"]] == pytest.approx([p for _, p in ranked])
        assert two["score"] == pytest.approx(base["score"]) == pytest.approx(ranked[0][1])
        raw_scores = {s["label"]: s["score"] for s in raw["scores"]}
        softmaxed = torch.tensor(list(raw_scores.values())).softmax(-1).tolist()
        assert dict(zip(raw_scores, softmaxed)) == pytest.approx(base["probabilities"], abs=1e-5)
        assert raw["score"] == pytest.approx(raw_scores[base["label"]])
        assert sig["score"] == pytest.approx(torch.tensor(raw_scores[base["label"]]).sigmoid().item(), abs=1e-6)
    with pytest.raises(ValueError, match="function_to_apply must be one of"):
        pipe(conv, function_to_apply="relu")
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        pipe(conv, top_k=0)


def test_audio_as_bytes_raw_dict_and_datasets_dict(checkpoints, processor, tmp_path, caplog):
    import io

    pipe = make_pipe(checkpoints, processor, "audio")
    waves = [tone(0.3, seed=1), tone(0.25, seed=2)]
    path = tmp_path / "a.wav"
    soundfile.write(path, waves[0], SR)
    expected = pipe({"turns": [{"audio": str(path)}, {"audio": {"array": waves[1], "sampling_rate": SR}}]})
    buffer = io.BytesIO()
    soundfile.write(buffer, waves[1], SR, format="WAV")
    given = pipe([{"audio": path.read_bytes()}, {"audio": {"raw": waves[1], "sampling_rate": SR}}])
    as_datasets = pipe([{"audio": {"bytes": None, "path": str(path)}}, {"audio": {"bytes": buffer.getvalue(),
                                                                                   "path": None}}])
    for a, b, c in zip(expected, given, as_datasets):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-4)
        assert a["probabilities"] == pytest.approx(c["probabilities"], abs=1e-4)
    with pytest.raises(HCAMAudioError, match="turn 0: .*given bytes"):
        pipe([{"audio": b"not audio at all"}])


def test_a_transformers_asr_pipeline_as_the_transcriber(checkpoints, processor):
    """Any callable or a transformers automatic-speech-recognition pipeline (called with {"raw", "sampling_rate"})."""
    from transformers import Pipeline

    class FakeASR(Pipeline):  # the interface of an ASR pipeline without a model to download
        task = "automatic-speech-recognition"

        def __init__(self):
            self.calls = []

        def __call__(self, inputs):
            self.calls.append(inputs)
            return [{"text": f"heard {len(x['raw'])} at {x['sampling_rate']}"} for x in inputs]

        _sanitize_parameters = preprocess = _forward = postprocess = None

    pipe = make_pipe(checkpoints, processor, "text")
    asr = FakeASR()
    results = pipe([{"audio": tone(0.2)}, {"text": "given"}], transcriber=asr)
    assert [r["text"] for r in results] == [f"heard {int(0.2 * SR)} at {SR}", "given"]
    assert [r["text_source"] for r in results] == ["asr", "given"]
    assert len(asr.calls) == 1 and set(asr.calls[0][0]) == {"raw", "sampling_rate"}
    dicts = pipe([{"audio": tone(0.2)}], transcriber=lambda waves: [{"text": "from a dict"} for _ in waves])
    assert dicts[0]["text"] == "from a dict"
    asr.task = "text-classification"
    with pytest.raises(ValueError, match="automatic-speech-recognition"):
        pipe([{"audio": tone(0.2)}], transcriber=asr)
    with pytest.raises(TypeError, match="transcriber must be a callable"):
        pipe([{"audio": tone(0.2)}], transcriber="whisper")


def test_a_bare_array_is_read_at_the_extractors_rate_with_one_warning(checkpoints, processor, caplog):
    import logging

    pipe = make_pipe(checkpoints, processor, "audio")
    logging.Logger.warning_once.cache_clear()  # once per process: forget earlier tests' warning
    with caplog.at_level(logging.WARNING):
        pipe([{"audio": tone(0.2)}, {"audio": tone(0.3, seed=1)}])
        pipe([{"audio": tone(0.2)}])
        pipe([{"audio": {"array": tone(0.2), "sampling_rate": SR}}])
    said = [r.getMessage() for r in caplog.records if "bare array" in r.getMessage()]
    assert len(said) == 1 and f"read as {SR} Hz" in said[0]
