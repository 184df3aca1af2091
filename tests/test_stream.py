"""Live conversations: `HCAMConversationStream` (model.start_conversation / pipeline.start_conversation / the
pipeline's stream=True) gives each turn's result as it arrives, equal to the causal model on the whole conversation,
running each turn's encoders once; bidirectional models are refused; it works from the saved folder alone."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile
import torch
from test_pipeline import SR, conversation, tone
from tiny import TINY_LABELS, minilm_processor, tiny_hcam_config

from hcam.modeling_hcam import HCAMForEmotionRecognition
from hcam.modeling_hcam.pipeline_hcam import HCAMEmotionPipeline, add_pipeline_to_folder

KINDS = {"bimodal": (3, ("audio", "text")), "text": (2, ("text",)), "audio": (2, ("audio",)),
         "stage1": (1, ("audio", "text"))}


@pytest.fixture(scope="module")
def processor():
    return minilm_processor(max_text_tokens=24)


@pytest.fixture(scope="module")
def models():
    result = {}
    for index, (kind, (stage, modalities)) in enumerate(KINDS.items()):
        torch.manual_seed(index)
        result[kind] = HCAMForEmotionRecognition(tiny_hcam_config(stage, modalities, context="causal")).eval()
    return result


def turns_of(kind, n=7, seed=0):
    return conversation(n, seed=seed, with_audio=kind != "text", with_text=kind != "audio")["turns"]


def assert_same(streamed, offline):
    assert len(streamed) == len(offline)
    for a, b in zip(streamed, offline):
        assert a["label"] == b["label"] and a["stages"] == b["stages"] and a["turn"] == b["turn"]
        assert a["speaker"] == b["speaker"] and a.get("text") == b.get("text")
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_stream_equals_the_causal_model_on_the_whole_conversation(models, processor, kind):
    model, turns = models[kind], turns_of(kind)
    stream = model.start_conversation(processor)
    streamed = [stream.add_turn(**turn) for turn in turns]
    offline = HCAMEmotionPipeline(model=model, processor=processor)({"turns": turns})
    assert_same(streamed, offline)
    # and the model itself on the padded whole conversation
    inputs = processor(text=[t["text"] for t in turns] if kind != "audio" else None,
                       audio=[t["audio"] for t in turns] if kind != "text" else None,
                       speakers=[t["speaker"] for t in turns])
    with torch.no_grad():
        expected = model(**inputs).logits[0].softmax(-1).numpy()
    got = np.array([[r["probabilities"][label] for label in TINY_LABELS] for r in streamed])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert len(stream) == len(turns) and stream.cache.num_turns == len(turns)


def test_each_turn_is_encoded_once(models, processor):
    """Earlier turns' encoders never run again: stage I sees exactly one utterance per modality per turn."""
    model = models["bimodal"]
    seen = []
    hooks = [encoder.register_forward_hook(lambda module, args, out: seen.append(out.last_hidden_state.shape[0]))
             for encoder in (model.utterance_encoders["audio"].encoder, model.utterance_encoders["text"].encoder)]
    try:
        stream = model.start_conversation(processor)
        for turn in turns_of("bimodal", n=12):
            stream.add_turn(**turn)
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == [1] * 24


def test_pipeline_stream_mode_yields_each_turn_as_it_is_read(models, processor):
    pipe = HCAMEmotionPipeline(model=models["bimodal"], processor=processor)
    turns = turns_of("bimodal", n=6)
    read = []

    def live():
        for turn in turns:
            read.append(turn)
            yield turn

    results = pipe(live(), stream=True)
    for index, result in enumerate(results):
        assert len(read) == index + 1  # nothing after this turn has been read yet
        assert result["turn"] == index
    assert_same(list(pipe({"turns": turns}, stream=True)), pipe({"turns": turns}))
    assert pipe.start_conversation().add_turn(**turns[0])["label"] in TINY_LABELS


def test_turns_without_text_are_transcribed(models, processor):
    model = models["text"]
    heard = []

    def transcriber(waveforms):
        heard.append(len(waveforms))
        return ["what was said" if len(waveforms[0]) > SR * 0.25 else "  "]

    stream = model.start_conversation(processor, transcriber=transcriber)
    first = stream.add_turn(audio=tone(0.5), speaker="A")
    second = stream.add_turn(audio=tone(0.2), speaker="B")
    given = stream.add_turn(text="given words", audio=tone(0.3), speaker="A")
    assert (first["text"], first["text_source"]) == ("what was said", "asr")
    assert (second["text"], second["text_source"]) == ("[inaudible]", "asr:empty")
    assert (given["text"], given["text_source"]) == ("given words", "given")
    assert heard == [1, 1]
    offline = HCAMEmotionPipeline(model=model, processor=processor)(
        {"turns": [{"text": r["text"], "speaker": r["speaker"]} for r in (first, second, given)]})
    assert_same([first, second, given], offline)


def test_bidirectional_models_and_bad_turns_are_refused(processor, models):
    torch.manual_seed(0)
    bidirectional = HCAMForEmotionRecognition(tiny_hcam_config(3)).eval()
    with pytest.raises(ValueError, match="needs a causal model"):
        bidirectional.start_conversation(processor)
    with pytest.raises(ValueError, match="needs a causal model"):
        HCAMEmotionPipeline(model=bidirectional, processor=processor)([{"text": "hi"}], stream=True)
    stream = models["bimodal"].start_conversation(processor)
    with pytest.raises(ValueError, match="turn 0 has no audio"):
        stream.add_turn(text="hello", speaker="A")
    with pytest.raises(ValueError, match="turn 0 has empty text"):
        stream.add_turn(audio=tone(0.3), speaker="A")
    with pytest.raises(ValueError, match="turn 0 is silent"):
        stream.add_turn(audio=np.zeros(SR // 2, dtype=np.float32), text="hello", speaker="A")
    assert len(stream) == 0  # nothing was kept of the refused turns
    stream.add_turn(audio=tone(0.3), text="hello", speaker="A")
    assert stream.add_turn(audio=tone(0.3), text="hello", speaker="B")["turn"] == 1


def test_a_conversation_without_speakers_keeps_running_without_speaker_masks(models, processor):
    model = models["text"]
    turns = [{"text": f"line {i}"} for i in range(4)]
    offline = HCAMEmotionPipeline(model=model, processor=processor)({"turns": turns})
    stream = model.start_conversation(processor)
    streamed = [stream.add_turn(**t) for t in turns[:3]]
    streamed.append(stream.add_turn(text="line 3", speaker="A"))  # a late speaker cannot change the past: ignored
    for a, b in zip(streamed, offline):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)


FRESH = textwrap.dedent("""
    import sys
    sys.modules["hcam"] = None  # only the saved folder may be used
    import json
    from transformers import AutoModel, AutoProcessor, pipeline
    folder, audio_files, out_file = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    stream = model.start_conversation(processor)
    turns = [{"audio": path, "text": f"line {i}", "speaker": "AB"[i % 2]} for i, path in enumerate(audio_files)]
    results = {"model": [stream.add_turn(**turn) for turn in turns]}
    pipe = pipeline("emotion-recognition-in-conversation", model=folder, trust_remote_code=True)
    results["pipeline"] = list(pipe(iter(turns), stream=True))
    json.dump(results, open(out_file, "w"))
""")


def test_stream_from_the_saved_folder_alone(models, processor, tmp_path):
    folder = tmp_path / "causal"
    models["bimodal"].save_pretrained(folder)
    processor.save_pretrained(folder)
    add_pipeline_to_folder(folder)
    audio_files = []
    for i in range(4):
        soundfile.write(tmp_path / f"turn{i}.wav", tone(0.2 + 0.1 * i, seed=i), SR)
        audio_files.append(str(tmp_path / f"turn{i}.wav"))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    env.pop("PYTHONPATH", None)
    result = subprocess.run([sys.executable, "-c", FRESH, str(folder), json.dumps(audio_files), str(tmp_path / "o.json")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = json.loads((tmp_path / "o.json").read_text())
    turns = [{"audio": path, "text": f"line {i}", "speaker": "AB"[i % 2]} for i, path in enumerate(audio_files)]
    expected = HCAMEmotionPipeline(model=models["bimodal"], processor=processor)({"turns": turns})
    assert_same(fresh["model"], expected)
    assert_same(fresh["pipeline"], expected)
