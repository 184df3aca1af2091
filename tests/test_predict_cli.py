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
                 "--output", str(tmp_path / "o.jsonl"), "--no_progress", "--skip_bad", "false"]) == 2
    assert "bad.csv row 2 (not_there.wav)" in capsys.readouterr().err
    # a text model, clips without transcripts and no ASR asked for: every turn is left out, which is an error
    assert main(["--model", str(checkpoints["text"]), "--audio_dir", str(folder), "--output",
                 str(tmp_path / "o.jsonl"), "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert "no text" in err and "--asr whisper" in err and "no turn left to predict" in err
    assert not (tmp_path / "o.jsonl").exists()
    assert main(["--model", str(checkpoints["text"]), "--audio_dir", str(folder), "--manifest", str(bad),
                 "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "exactly one input" in capsys.readouterr().err
    segments = tmp_path / "seg.csv"
    segments.write_text("start,end\n0,1\n2,1\n")
    soundfile.write(tmp_path / "r.wav", np.random.default_rng(0).standard_normal(3 * SR).astype(np.float32) * 0.1, SR)
    assert main(["--model", str(checkpoints["audio"]), "--recording", str(tmp_path / "r.wav"), "--segments",
                 str(segments), "--output", str(tmp_path / "o.jsonl"), "--no_skip_bad"]) == 2
    assert "seg.csv row 2 (seg.csv:3): need 0 <= start < end" in capsys.readouterr().err
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
                 "--output", str(tmp_path / "o.jsonl"), "--no_progress", "--skip_bad=false"]) == 2
    err = capsys.readouterr().err
    assert "bad.csv:3" in err and "3 fields but the header has 2" in err


def write_manifest(path, rows, fieldnames=None):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def absolute_rows(demo_rows):
    return [{**r, "audio": str(DEMO / r["audio"])} for r in demo_rows]


def test_skip_bad_covers_every_turn_problem_in_one_run(checkpoints, absolute_rows, tmp_path, capsys):
    """Silent, too short, empty, corrupt and missing audio, empty text and a bad turn number: all listed in one run;
    the default leaves them out (like run_stage.py), --skip_bad false stops with one error and no output file."""
    soundfile.write(tmp_path / "silent.wav", np.zeros(SR, np.float32), SR)
    soundfile.write(tmp_path / "short.wav", np.full(200, 0.3, np.float32), SR)  # 12 ms < min_duration_seconds
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF" + os.urandom(300))
    first = [r for r in absolute_rows if r["dialogue_id"] == absolute_rows[0]["dialogue_id"]]
    bad = dict(first[1])
    rows = [first[0],
            {**bad, "turn": "101", "audio": str(tmp_path / "silent.wav")},
            {**bad, "turn": "102", "audio": str(tmp_path / "short.wav")},
            {**bad, "turn": "103", "audio": str(tmp_path / "empty.wav")},
            {**bad, "turn": "104", "audio": str(tmp_path / "corrupt.wav")},
            {**bad, "turn": "105", "audio": str(tmp_path / "gone.wav")},
            {**bad, "turn": "106", "text": ""},
            {**bad, "turn": "one hundred"},
            *first[1:]]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    kinds = {"silent_audio", "short_audio", "empty_audio", "corrupt_audio", "missing_audio", "empty_text", "bad_turn"}
    args = ["--model", str(checkpoints["bimodal"]), "--manifest", str(manifest), "--no_progress"]

    out = tmp_path / "stop.jsonl"
    assert main([*args, "--output", str(out), "--skip_bad", "false"]) == 2
    err = capsys.readouterr().err
    assert "7 bad item(s)" in err and "--skip_bad" in err and "skip_bad=True (" not in err.replace(
        "(skip_bad=True in Python", "")
    for turn in ("101", "102", "103", "104", "105", "106", "one hundred"):
        assert f"#{turn} (m.csv:" in err, turn
    assert not out.exists() and not list(tmp_path.glob(".stop*"))  # no output, not even a partial one
    report = json.loads((tmp_path / "stop.data_report.json").read_text())
    assert {p["kind"] for p in report["problems"]} == kinds and not any(p["skipped"] for p in report["problems"])

    out = tmp_path / "skip.jsonl"
    assert main([*args, "--output", str(out)]) == 0  # the default, as in run_stage.py
    err = capsys.readouterr().err
    assert "7 bad item(s) left out" in err and "skip.data_report.json" in err
    report = json.loads((tmp_path / "skip.data_report.json").read_text())
    assert {p["kind"] for p in report["problems"]} == kinds and all(p["skipped"] for p in report["problems"])
    predicted = read_jsonl(out)
    assert [r["text"] for r in predicted] == [r["text"] for r in first]
    # the conversation without its bad turns gives what the clean conversation gives
    clean = write_manifest(tmp_path / "clean.csv", first)
    assert main(["--model", str(checkpoints["bimodal"]), "--manifest", str(clean), "--no_progress", "--output",
                 str(tmp_path / "clean.jsonl")]) == 0
    assert not (tmp_path / "clean.data_report.json").exists()  # no problems, no report
    for a, b in zip(predicted, read_jsonl(tmp_path / "clean.jsonl"), strict=True):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)
    assert main([*args, "--output", str(tmp_path / "bare.jsonl"), "--skip_bad"]) == 0  # a bare flag, as run_stage


def test_output_formats_json_document_csv_and_standard_output(checkpoints, absolute_rows, tmp_path, capsys,
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a "-.metrics.json" would land
    manifest = write_manifest(tmp_path / "m.csv", absolute_rows)
    args = ["--model", str(checkpoints["bimodal"]), "--manifest", str(manifest), "--no_progress"]
    assert main([*args, "--output", str(tmp_path / "p.jsonl")]) == 0
    lines = read_jsonl(tmp_path / "p.jsonl")
    assert main([*args, "--output", str(tmp_path / "p.json")]) == 0
    document = json.loads((tmp_path / "p.json").read_text())
    assert document == lines  # one JSON list of the same rows
    capsys.readouterr()
    assert main([*args, "--output", "-", "--evaluate"]) == 0
    captured = capsys.readouterr()
    assert [json.loads(line) for line in captured.out.splitlines()] == lines  # stdout holds only the rows
    assert "weighted F1" in captured.err and not list(tmp_path.glob("-*"))
    assert main([*args, "--output", str(tmp_path / "p.txt")]) == 2
    assert ".json (one JSON list of rows)" in capsys.readouterr().err


def test_conversations_dir_one_subfolder_per_conversation(checkpoints, absolute_rows, tmp_path, capsys):
    root = tmp_path / "calls"
    by_dialogue = {}
    for r in absolute_rows:
        by_dialogue.setdefault(r["dialogue_id"], []).append(r)
    for dialogue, rows in by_dialogue.items():
        folder = root / f"call-{dialogue}"
        folder.mkdir(parents=True)
        with open(folder / "transcripts.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "text", "speaker", "label"])
            for r in rows:
                (folder / Path(r["audio"]).name).write_bytes(Path(r["audio"]).read_bytes())
                writer.writerow([Path(r["audio"]).name, r["text"], r["speaker"], r["label"]])
    (root / "call-zzz-empty").mkdir()  # no clips, no table: reported and left out
    args = ["--model", str(checkpoints["bimodal"]), "--no_progress"]
    assert main([*args, "--conversations_dir", str(root), "--transcripts", "transcripts.csv", "--output",
                 str(tmp_path / "all.jsonl")]) == 0
    assert "call-zzz-empty/" in capsys.readouterr().err
    rows = read_jsonl(tmp_path / "all.jsonl")
    assert list(dict.fromkeys(r["dialogue_id"] for r in rows)) == [f"call-{d}" for d in by_dialogue]
    for dialogue in by_dialogue:  # each subfolder gives what --audio_dir gives for it alone
        folder = root / f"call-{dialogue}"
        assert main([*args, "--audio_dir", str(folder), "--transcripts", str(folder / "transcripts.csv"), "--output",
                     str(tmp_path / "one.jsonl")]) == 0
        alone = read_jsonl(tmp_path / "one.jsonl")
        together = [r for r in rows if r["dialogue_id"] == folder.name]
        assert [r["text"] for r in together] == [r["text"] for r in alone]
        for a, b in zip(together, alone, strict=True):
            assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)
    assert main([*args, "--conversations_dir", str(root), "--transcripts", str(root / "x.csv"), "--output",
                 str(tmp_path / "x.jsonl")]) == 2
    assert "file name inside each subfolder" in capsys.readouterr().err


def test_manifest_column_flags_are_run_stages(checkpoints, absolute_rows, tmp_path, capsys):
    renamed = {"dialogue_id": "conversation", "turn": "utt", "speaker": "who", "text": "transcript",
               "audio": "wav", "label": "emotion"}
    plain = write_manifest(tmp_path / "plain.csv", absolute_rows)
    own = write_manifest(tmp_path / "own.csv", [{renamed.get(k, k): v for k, v in r.items()} for r in absolute_rows])
    args = ["--model", str(checkpoints["bimodal"]), "--no_progress"]
    assert main([*args, "--manifest", str(plain), "--output", str(tmp_path / "plain.jsonl"), "--evaluate"]) == 0
    flags = [word for column, name in renamed.items() for word in (f"--{column}_column_name", name)]
    assert main([*args, "--manifest", str(own), "--output", str(tmp_path / "own.jsonl"), "--evaluate", *flags]) == 0
    assert read_jsonl(tmp_path / "own.jsonl") == read_jsonl(tmp_path / "plain.jsonl")
    with pytest.warns(FutureWarning, match="--text_column_name"):  # the old name, as in run_stage.py
        assert main([*args, "--manifest", str(own), "--output", str(tmp_path / "old.jsonl"),
                     *[w.replace("--text_column_name", "--text_column") for w in flags]]) == 0
    capsys.readouterr()
    assert main([*args, "--manifest", str(own), "--output", str(tmp_path / "x.jsonl")]) == 2
    assert "--dialogue_id_column_name" in capsys.readouterr().err  # the command-line spelling
    assert main([*args, "--manifest", str(own), "--output", str(tmp_path / "x.jsonl"), *flags[:8],
                 "--label_column_name", "mood"]) == 2  # a label column named explicitly must exist
    assert "'mood' not found" in capsys.readouterr().err
    assert main([*args, "--audio_dir", str(tmp_path), "--text_column_name", "t", "--output", "x.jsonl"]) == 2
    assert "name the columns of --manifest" in capsys.readouterr().err


def test_a_missing_model_folder_is_named(tmp_path, capsys):
    for name in (str(tmp_path / "stage3"), "outputs/demo/stage3x", "./stage3"):
        assert main(["--model", name, "--manifest", str(DEMO / "test.csv"), "--output", str(tmp_path / "o.jsonl")]) == 2
        assert "no such folder" in capsys.readouterr().err


def test_revision_refused_for_a_local_folder(checkpoints, absolute_rows, tmp_path, capsys):
    manifest = write_manifest(tmp_path / "m.csv", absolute_rows)
    assert main(["--model", str(checkpoints["text"]), "--manifest", str(manifest), "--output",
                 str(tmp_path / "o.jsonl"), "--revision", "stage2-text"]) == 2
    assert "local folder" in capsys.readouterr().err


def test_threads_default_and_flag(monkeypatch):
    import torch

    from hcam.trainer.predict import DEFAULT_THREADS, PredictError, resolve_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        torch.set_num_threads(2)
        assert resolve_threads(None, "cpu") == DEFAULT_THREADS == torch.get_num_threads()
        assert resolve_threads(3, "cpu") == 3 == torch.get_num_threads()
        assert resolve_threads(0, "cpu") == (os.cpu_count() or 1) == torch.get_num_threads()
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        torch.set_num_threads(2)
        assert resolve_threads(None, "cpu") is None and torch.get_num_threads() == 2  # the environment decides
        with pytest.raises(PredictError, match="--threads"):
            resolve_threads(-1)
    finally:
        torch.set_num_threads(before)


def test_hub_model_at_a_revision_with_a_token(checkpoints, absolute_rows, tmp_path, monkeypatch):
    """--revision picks a stage's branch of a Hub repo (pushed as run_stage.py pushes), --token is sent with every
    request: against the local Hub server, hcam-predict in a fresh process."""
    from hcam.hub_cards import local_hub, push_stage

    seen = []
    dispatch = local_hub._Handler._dispatch

    def recording(handler, method):
        seen.append((handler.path, handler.headers.get("Authorization")))
        return dispatch(handler, method)

    monkeypatch.setattr(local_hub._Handler, "_dispatch", recording)
    manifest = write_manifest(tmp_path / "m.csv", absolute_rows)
    with local_hub.LocalHubServer(tmp_path / "hub") as hub:
        push_stage(checkpoints["text"], "org/hcam-x", "stage2-text", card=None, endpoint=hub.url, token="hf_push")
        push_stage(checkpoints["bimodal"], "org/hcam-x", "stage3", card=None, endpoint=hub.url, also_main=True,
                   token="hf_push")
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN", "TRANSFORMERS_OFFLINE")}
        env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HOME=str(tmp_path / "home"), PYTHONPATH="")
        script = Path(sys.executable).parent / "hcam-predict"
        outputs = {}
        for revision in (None, "stage2-text"):
            seen.clear()
            out = tmp_path / f"{revision or 'main'}.jsonl"
            run = subprocess.run([str(script), "--model", "org/hcam-x", "--manifest", str(manifest), "--output",
                                  str(out), "--no_progress", "--token", "hf_secret_token"]
                                 + (["--revision", revision] if revision else []),
                                 env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
            assert run.returncode == 0, run.stderr[-3000:]
            outputs[revision] = read_jsonl(out)
            downloads = [auth for path, auth in seen if "/resolve/" in path]
            assert downloads and all(auth == "Bearer hf_secret_token" for auth in downloads), seen
    assert set(outputs[None][0]["stages"]) == {"audio_utterance", "text_utterance", "audio_context", "text_context",
                                               "fusion"}
    assert set(outputs["stage2-text"][0]["stages"]) == {"text_utterance", "text_context"}
    for revision, kind in ((None, "bimodal"), ("stage2-text", "text")):  # the same model as the local folder
        assert main(["--model", str(checkpoints[kind]), "--manifest", str(manifest), "--no_progress", "--output",
                     str(tmp_path / "local.jsonl")]) == 0
        for a, b in zip(outputs[revision], read_jsonl(tmp_path / "local.jsonl"), strict=True):
            assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)
