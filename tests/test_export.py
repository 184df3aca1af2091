"""hcam-export --onnx: onnxruntime gives PyTorch's outputs (within 1e-4) for other numbers of turns, audio lengths and
token counts than the graph was traced with; the numpy runner written beside the graph gives the pipeline's
predictions without PyTorch; causal and stage-1/2 models export too; the model is left as it was."""
import importlib.util
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from tiny import minilm_processor, random_inputs, save_checkpoint

pytest.importorskip("onnxscript", reason='hcam-export needs pip install "hcam[export]" (make setup installs it)')
onnxruntime = pytest.importorskip("onnxruntime", reason='hcam-export needs pip install "hcam[export]"')

from hcam.modeling_hcam.pipeline_hcam import HCAMEmotionPipeline  # noqa: E402
from hcam.trainer.export import (  # noqa: E402
    conversation_input_names, embedding_names, export_onnx, graph_input_names, graph_output_names, main)

TOLERANCE = 1e-4
MODEL_INPUTS = ("input_values", "attention_mask", "input_ids", "text_attention_mask", "utterance_mask", "speaker_ids")


@pytest.fixture(scope="module")
def processor():
    return minilm_processor(max_text_tokens=24)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, processor):
    """A tiny stage-3 checkpoint (encoder chunks of 2 turns, so PyTorch cuts each chunk to its own longest turn while
    the graph pads every turn to the longest) exported with the command line: (model, checkpoint, export folder)."""
    checkpoint = tmp_path_factory.mktemp("hcam-stage3")
    model = save_checkpoint(checkpoint, 3, processor=processor, encoder_chunk_size=2)
    folder = tmp_path_factory.mktemp("onnx") / "exported"
    assert main(["--model", str(checkpoint), "--onnx", str(folder)]) == 0
    return model, checkpoint, folder


def onnx_outputs(path, inputs, names):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == names
    return session.run(None, {name: inputs[name].numpy() for name in names})


def largest_difference(model, path, inputs, speaker_ids=True):
    """The largest difference between onnxruntime and the model's forward, over every output and real turn."""
    names = graph_input_names(model.config)
    with torch.no_grad():
        output = model(**{k: inputs[k] for k in MODEL_INPUTS if k in inputs and (k != "speaker_ids" or speaker_ids)})
    if not speaker_ids:  # the graph's "no speakers": every id -1
        inputs = {**inputs, "speaker_ids": torch.full_like(inputs["utterance_mask"], -1)}
    turns = inputs["utterance_mask"].bool().numpy()
    outputs = graph_output_names(model.config) + embedding_names(model.config)
    results = dict(zip(outputs, onnx_outputs(path, inputs, names)))
    assert list(results) == outputs
    # conversation.onnx, on the embeddings model.onnx gives
    conversation = onnxruntime.InferenceSession(str(path.with_name("conversation.onnx")),
                                                providers=["CPUExecutionProvider"])
    feed = {name: results[name] if name in results else inputs[name].numpy()
            for name in conversation_input_names(model.config)}
    from_embeddings = zip(graph_output_names(model.config), conversation.run(None, feed))
    return max(float(np.abs(result - output[name].numpy())[turns].max())
               for name, result in [*results.items(), *from_embeddings])


def test_exported_graph_matches_pytorch_for_other_lengths(exported):
    """Traced on conversations of 3 and 2 turns; run on 7 turns alone, on 4 + 1 turns padded together, with other
    audio lengths and token counts, with and without speakers."""
    model, _, folder = exported
    for dialogue_turns, samples, tokens in (((7,), 3200, 11), ((4, 1), 1200, 5), ((1,), 800, 3)):
        inputs = random_inputs(dialogue_turns, samples=samples, tokens=tokens, seed=len(dialogue_turns) + samples)
        assert largest_difference(model, folder / "model.onnx", inputs) < TOLERANCE, dialogue_turns
    inputs = random_inputs((6,), samples=2000, tokens=9, seed=5)
    assert largest_difference(model, folder / "model.onnx", inputs, speaker_ids=False) < TOLERANCE
    # the logits differ between turns: the check above cannot pass on a constant graph
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {n: inputs[n].numpy() for n in graph_input_names(model.config)})[0]
    assert np.abs(np.diff(logits[0], axis=0)).max() > 1e-3


def test_the_model_is_left_as_it_was(exported):
    model, _, _ = exported
    for module in [*model.utterance_encoders.values(), *model.context_encoders.values()]:
        assert type(module.gru) is torch.nn.GRU


def test_export_folder_and_settings(exported):
    model, _, folder = exported
    settings = json.loads((folder / "hcam_onnx.json").read_text())
    assert settings["labels"] == [model.config.id2label[i] for i in range(model.config.num_labels)]
    assert settings["inputs"] == list(MODEL_INPUTS)
    heads = ["logits", "audio_utterance_logits", "text_utterance_logits", "audio_context_logits", "text_context_logits",
             "fusion_logits"]
    assert settings["outputs"] == heads + ["audio_embeddings", "text_embeddings"]
    assert settings["conversation_outputs"] == heads
    assert settings["conversation_inputs"] == ["audio_embeddings", "text_embeddings", "utterance_mask", "speaker_ids"]
    assert settings["max_text_tokens"] == 24
    for name in ("model.onnx", "conversation.onnx", "hcam_onnx.py", "tokenizer.json", "processor_config.json"):
        assert (folder / name).is_file(), name


def tone(seconds, seed, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * (120 + 30 * seed) * t) + 0.05 * noise).astype(np.float32)


def conversation(n, seed=0, speakers=True):
    return [{"audio": tone(0.3 + 0.1 * (i % 4), seed + i), "text": f"turn {i} is " + "really " * (i % 3) + "fine",
             **({"speaker": "BA"[i % 2]} if speakers else {})} for i in range(n)]


def load_runner(folder):
    spec = importlib.util.spec_from_file_location("hcam_onnx_under_test", folder / "hcam_onnx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runner_builds_the_processors_inputs_and_gives_the_pipelines_predictions(exported, processor):
    model, _, folder = exported
    runner = load_runner(folder).HCAMOnnx(str(folder))
    turns = conversation(5)
    inputs = runner.inputs([turns])
    expected = processor(audio=[t["audio"] for t in turns], text=[t["text"] for t in turns],
                         speakers=[t["speaker"] for t in turns], return_tensors="np")
    for name in MODEL_INPUTS:
        if name == "input_values":
            np.testing.assert_allclose(inputs[name], expected[name], atol=1e-5)
        else:
            np.testing.assert_array_equal(inputs[name], expected[name], err_msg=name)
    pipe = HCAMEmotionPipeline(model=model, processor=processor)
    for speakers in (True, False):
        turns = conversation(6, seed=3, speakers=speakers)
        ours, reference = runner(turns), pipe({"turns": turns})
        assert len(ours) == len(reference) == 6
        for mine, theirs in zip(ours, reference):
            assert mine["label"] == theirs["label"] and mine["stages"] == theirs["stages"]
            assert max(abs(mine["probabilities"][k] - p) for k, p in theirs["probabilities"].items()) < TOLERANCE
    # the turns were encoded in groups of similar length (and of at most the checkpoint's encoder_chunk_size, 2), then
    # conversation.onnx ran; model.onnx on the whole padded conversation at once gives the same
    feed = runner.inputs([turns])
    assert len(runner._groups(feed)) > 1
    grouped = runner.run(feed)
    runner.settings.update(same_chunk_ratio=0.0, encoder_chunk_size=64)
    assert len(runner._groups(feed)) == 1
    at_once = runner.run(feed)
    for name, values in grouped.items():
        np.testing.assert_allclose(values, at_once[name], atol=TOLERANCE, err_msg=name)
    # several conversations padded together give each one's own results
    together = runner([conversation(2, seed=7), conversation(4, seed=9)])
    alone = runner(conversation(2, seed=7))
    assert [t["label"] for t in together[0]] == [t["label"] for t in alone]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(together[0], alone)) < TOLERANCE


def test_runner_needs_no_pytorch(exported, tmp_path):
    """A fresh process in which torch, transformers and hcam cannot be imported runs the copied runner."""
    _, _, folder = exported
    turns = [{"audio": tone(0.5, i).tolist(), "text": "hello there", "speaker": "AB"[i % 2]} for i in range(3)]
    (tmp_path / "conversation.json").write_text(json.dumps(turns))
    script = textwrap.dedent(f"""
        import sys
        class Refuse:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "transformers", "hcam"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Refuse())
        sys.argv = ["hcam_onnx.py", {str(folder)!r}, {str(tmp_path / "conversation.json")!r}]
        sys.path.insert(0, {str(folder)!r})
        import runpy
        runpy.run_path({str(folder / "hcam_onnx.py")!r}, run_name="__main__")
        assert not any(m.split(".")[0] in ("torch", "transformers") for m in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    predictions = json.loads(result.stdout)
    assert [p["turn"] for p in predictions] == [0, 1, 2] and all(p["label"] for p in predictions)


@pytest.mark.parametrize("kind", ["causal stage 3", "stage 2 audio", "stage 1 text"])
def test_other_kinds_export(kind, tmp_path, processor):
    """A causal model (its whole-conversation graph), a stage-2 audio-only model without stage-II self-attention and
    a stage-1 text-only model pooling its encoder's layers; their graphs take only the inputs they read."""
    stage, modalities, overrides = {
        "causal stage 3": (3, ("audio", "text"), {"context": "causal"}),
        "stage 2 audio": (2, ("audio",), {"context_self_attention": False}),
        "stage 1 text": (1, ("text",), {"use_weighted_layer_sum": True}),
    }[kind]
    model = save_checkpoint(tmp_path / "checkpoint", stage, modalities, seed=4, processor=processor, **overrides)
    model.train()
    assert export_onnx(model, processor, tmp_path / "exported", log=lambda line: None) < TOLERANCE
    assert model.training  # given back as it came
    model.eval()
    expected_inputs = {"stage 2 audio": ["input_values", "attention_mask", "utterance_mask", "speaker_ids"],
                       "stage 1 text": ["input_ids", "text_attention_mask", "utterance_mask"]}.get(kind, list(MODEL_INPUTS))
    assert graph_input_names(model.config) == expected_inputs
    inputs = random_inputs((6, 3), samples=2400, tokens=10, seed=11)
    assert largest_difference(model, tmp_path / "exported" / "model.onnx", inputs) < TOLERANCE


def test_command_line_errors_exit_2_without_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--model", str(tmp_path / "missing"), "--onnx", str(tmp_path / "out")])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "hcam-export: error: no such folder" in err and "Traceback" not in err and "missing" in err
    with pytest.raises(SystemExit) as stopped:
        main(["--model", str(tmp_path)])  # --onnx is required
    assert stopped.value.code == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bidirectional", [True, False])
def test_gru_op_in_onnx_layout_runs_eagerly_as_the_model_does(bidirectional):
    """hcam::gru, run outside an export, takes the weights in ONNX's layout and gives the model's run_gru."""
    from hcam.modeling_hcam.modeling_hcam import run_gru
    from hcam.trainer.export import _gru, _swap_gates

    torch.manual_seed(0)
    gru = torch.nn.GRU(5, 3, batch_first=True, bidirectional=bidirectional).eval()
    inputs, lengths = torch.randn(3, 6, 5), torch.tensor([6, 2, 4])
    suffixes = ["", "_reverse"] if bidirectional else [""]
    layer = {name: torch.stack([_swap_gates(getattr(gru, f"{name}_l0{s}")) for s in suffixes]).detach()
             for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    with torch.no_grad():
        ours = _gru(inputs, lengths, layer["weight_ih"], layer["weight_hh"],
                    torch.cat([layer["bias_ih"], layer["bias_hh"]], dim=1), 3, bidirectional)
        expected = run_gru(gru, inputs, lengths)
    torch.testing.assert_close(ours, expected)
    assert ours[1, 2:].abs().max() == 0  # padded steps stay zero
