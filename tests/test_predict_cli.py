"""hcam-predict: a real subprocess run of the installed console script, every input form, every checkpoint kind,
evaluation consistent with the written predictions, clear errors."""
import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from tiny import TINY_LABELS, minilm_processor, save_checkpoint

from hcam.modeling_hcam.feature_extraction_hcam import load_audio
from hcam.trainer.predict import main

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"
SR = 16000
KINDS = {"bimodal": (3, ("audio", "text")), "text": (2, ("text",)), "audio": (2, ("audio",))}

pytestmark = pytest.mark.skipif(not (DEMO / "test.csv").is_file(), reason="the demo corpus (data/demo) is missing")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    processor = minilm_processor()
    folders = {}
    for index, (kind, (stage, modalities)) in enumerate(KINDS.items()):
        folders[kind] = tmp_path_factory.mktemp(f"ckpt-{kind}")
        # the CLI must not depend on the pipeline file being in the folder: the audio one has none
        save_checkpoint(folders[kind], stage, modalities, seed=index, processor=processor, pipeline=kind != "audio",
                        encoder_chunk_size=3)
    return folders


@pytest.fixture(scope="module")
def demo_rows():
    """The first two test dialogues of the demo corpus."""
    with open(DEMO / "test.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    first_two = list(dict.fromkeys(r["dialogue_id"] for r in rows))[:2]
    return [r for r in rows if r["dialogue_id"] in first_two]


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory, demo_rows):
    """A folder of the first dialogue's clips plus a transcripts file (file,text,speaker,label)."""
    folder = tmp_path_factory.mktemp("clips")
    first = [r for r in demo_rows if r["dialogue_id"] == demo_rows[0]["dialogue_id"]]
    with open(folder / "transcripts.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "text", "speaker", "label"])
        for r in first:
            name = Path(r["audio"]).name
            (folder / name).write_bytes((DEMO / r["audio"]).read_bytes())
            writer.writerow([name, r["text"], r["speaker"], r["label"]])
    return folder, first


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_console_script_subprocess_writes_jsonl_and_csv(checkpoints, audio_dir, demo_rows, tmp_path):
    script = Path(sys.executable).parent / "hcam-predict"
    assert script.is_file(), "hcam-predict is not installed: run `pip install -e .`"
    folder, first = audio_dir
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    run = subprocess.run(
        [str(script), "--model", str(checkpoints["bimodal"]), "--audio_dir", str(folder), "--transcripts",
         str(folder / "transcripts.csv"), "--output", str(tmp_path / "out.jsonl")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "hcam-predict" in run.stderr and "turn" in run.stderr  # the progress bar
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["turn"] for r in rows] == list(range(len(first)))
    assert [r["text"] for r in rows] == [r["text"] for r in first]
    assert [r["speaker"] for r in rows] == [r["speaker"] for r in first]
    assert [r["reference"] for r in rows] == [r["label"] for r in first]
    for r in rows:
        assert r["label"] in TINY_LABELS and set(r["probabilities"]) == set(TINY_LABELS)
        assert sum(r["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert r["score"] == max(r["probabilities"].values())
        assert set(r["stages"]) == {"audio_utterance", "text_utterance", "audio_context", "text_context", "fusion"}

    # CSV through a manifest (two dialogues), with evaluation
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(demo_rows[0]))
        writer.writeheader()
        for r in demo_rows:
            writer.writerow({**r, "audio": str(DEMO / r["audio"])})
    run = subprocess.run(
        [str(script), "--model", str(checkpoints["bimodal"]), "--manifest", str(manifest), "--output",
         str(tmp_path / "out.csv"), "--evaluate", "--no_progress"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "weighted F1" in run.stdout
    with open(tmp_path / "out.csv", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(demo_rows)
    assert [(t["dialogue_id"], t["text"]) for t in table] == [(r["dialogue_id"], r["text"]) for r in demo_rows]
    assert {f"prob_{label}" for label in TINY_LABELS} | {"stage_fusion", "label", "reference"} <= set(table[0])
    # the first dialogue's predictions are the same whichever way the turns came in
    assert [t["label"] for t in table[: len(rows)]] == [r["label"] for r in rows]
    metrics = json.loads((tmp_path / "out.metrics.json").read_text())
    accuracy = np.mean([t["label"] == t["reference"] for t in table])
    assert metrics["heads"]["ensemble"]["accuracy"] == pytest.approx(accuracy)
    fusion_accuracy = np.mean([t["stage_fusion"] == t["reference"] for t in table])
    assert metrics["heads"]["fusion"]["accuracy"] == pytest.approx(fusion_accuracy)
    assert metrics["transcripts"] == "gold" and metrics["num_turns"] == len(demo_rows)


def test_long_recording_with_segments_matches_separate_clips(checkpoints, audio_dir, tmp_path):
    folder, first = audio_dir
    clips = [load_audio(folder / Path(r["audio"]).name) for r in first]
    soundfile.write(tmp_path / "recording.wav", np.concatenate(clips), SR, subtype="FLOAT")
    with open(tmp_path / "segments.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["start", "end", "speaker", "text"])
        offset = 0
        for clip, r in zip(clips, first):
            writer.writerow([repr(offset / SR), repr((offset + len(clip)) / SR), r["speaker"], r["text"]])
            offset += len(clip)
    assert main(["--model", str(checkpoints["bimodal"]), "--recording", str(tmp_path / "recording.wav"), "--segments",
                 str(tmp_path / "segments.csv"), "--output", str(tmp_path / "rec.jsonl"), "--no_progress"]) == 0
    assert main(["--model", str(checkpoints["bimodal"]), "--audio_dir", str(folder), "--transcripts",
                 str(folder / "transcripts.csv"), "--output", str(tmp_path / "dir.jsonl"), "--no_progress"]) == 0
    from_recording, from_dir = read_jsonl(tmp_path / "rec.jsonl"), read_jsonl(tmp_path / "dir.jsonl")
    assert from_recording[0]["start"] == 0 and from_recording[-1]["end"] == pytest.approx(offset / SR)
    for a, b in zip(from_recording, from_dir, strict=True):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)


@pytest.mark.parametrize("kind", ["text", "audio"])
def test_single_modality_checkpoints(checkpoints, audio_dir, tmp_path, kind):
    folder, first = audio_dir
    args = ["--model", str(checkpoints[kind]), "--output", str(tmp_path / "out.jsonl"), "--no_progress"]
    if kind == "text":  # text only: a manifest without any audio column
        manifest = tmp_path / "text.jsonl"
        manifest.write_text("".join(json.dumps({"dialogue_id": "d", "speaker": r["speaker"], "text": r["text"]}) + "\n"
                                    for r in first))
        args += ["--manifest", str(manifest)]
    else:  # audio only: just a folder of clips, no transcripts
        args += ["--audio_dir", str(folder)]
    assert main(args) == 0
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert len(rows) == len(first)
    assert set(rows[0]["stages"]) == {f"{kind}_utterance", f"{kind}_context"}
    if kind == "audio":  # sorted by file name = turn order of the demo clips
        assert [Path(r["audio"]).name for r in rows] == sorted(Path(r["audio"]).name for r in first)


def test_errors_name_the_item(checkpoints, audio_dir, tmp_path, capsys):
    folder, first = audio_dir
    bad = tmp_path / "bad.csv"
    bad.write_text("file,text\n" + f"{Path(first[0]['audio']).name},hello\nnot_there.wav,hi\n")
    assert main(["--model", str(checkpoints["bimodal"]), "--audio_dir", str(folder), "--transcripts", str(bad),
                 "--output", str(tmp_path / "o.jsonl"), "--no_progress"]) == 2
    assert "bad.csv row 2 (not_there.wav)" in capsys.readouterr().err
    # a text model, clips without transcripts and no ASR asked for
    assert main(["--model", str(checkpoints["text"]), "--audio_dir", str(folder), "--output",
                 str(tmp_path / "o.jsonl"), "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert "have no text" in err and "--asr whisper" in err
    assert main(["--model", str(checkpoints["text"]), "--audio_dir", str(folder), "--manifest", str(bad),
                 "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "exactly one input" in capsys.readouterr().err
    segments = tmp_path / "seg.csv"
    segments.write_text("start,end\n0,1\n2,1\n")
    soundfile.write(tmp_path / "r.wav", np.random.default_rng(0).standard_normal(3 * SR).astype(np.float32) * 0.1, SR)
    assert main(["--model", str(checkpoints["audio"]), "--recording", str(tmp_path / "r.wav"), "--segments",
                 str(segments), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "seg.csv row 2: need 0 <= start < end" in capsys.readouterr().err
    labelled = tmp_path / "labelled.csv"
    labelled.write_text("dialogue_id,turn,text,label\nd,0,hello,furious\n")
    assert main(["--model", str(checkpoints["text"]), "--manifest", str(labelled), "--evaluate",
                 "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "furious" in capsys.readouterr().err


def test_batch_size_does_not_change_predictions_and_plot(checkpoints, demo_rows, tmp_path):
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(demo_rows[0]))
        writer.writeheader()
        for r in demo_rows:
            writer.writerow({**r, "audio": str(DEMO / r["audio"])})
    outputs = {}
    for batch_size in (1, 2):
        out = tmp_path / f"b{batch_size}.jsonl"
        args = ["--model", str(checkpoints["bimodal"]), "--manifest", str(manifest), "--output", str(out),
                "--batch_size", str(batch_size), "--no_progress"]
        if batch_size == 2 and importlib.util.find_spec("matplotlib"):
            args += ["--plot", str(tmp_path / "timeline.png"), "--plot_attention_turn", "2"]
        assert main(args) == 0
        outputs[batch_size] = read_jsonl(out)
    assert [(r["dialogue_id"], r["turn"], r["label"]) for r in outputs[1]] == [
        (r["dialogue_id"], r["turn"], r["label"]) for r in outputs[2]]
    for a, b in zip(outputs[1], outputs[2]):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["--model", str(checkpoints["bimodal"]), "--manifest", str(manifest), "--output",
                 str(tmp_path / "x.jsonl"), "--plot_attention_turn", "1"]) == 2


def test_malformed_table_rows_are_named(checkpoints, audio_dir, tmp_path, capsys):
    folder, _ = audio_dir
    bad = tmp_path / "bad.csv"
    bad.write_text("file,text\na.wav,hello\nb.wav,one,too many\n")
    assert main(["--model", str(checkpoints["text"]), "--audio_dir", str(folder), "--transcripts", str(bad),
                 "--output", str(tmp_path / "o.jsonl"), "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert "bad.csv:3" in err and "3 fields but the header has 2" in err
