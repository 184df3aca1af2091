"""run_stage.py with --push_to_hub: stage folders get the pipeline and our model card, every stage is pushed to its
branch of a local Hub-protocol server (in this process), a failed push leaves the stage intact and a rerun of the same
command pushes without retraining."""

import fnmatch
import json
import os
import urllib.request

import pytest
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results
from test_trainer import stage_argv, write_corpus, write_tiny_text_encoder

from local_hub import LocalHubServer
from hcam.hub_cards.push import PICKLE_PATTERNS

REPO = "org/hcam-trainer-test"
TOKEN = "hf_secret_token_do_not_print"
METRICS = {("f1", "weighted"): "weighted_f1", ("f1", "macro"): "macro_f1", ("accuracy", None): "accuracy"}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with LocalHubServer(tmp_path_factory.mktemp("hub-root")) as server:
        yield server


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainer_hub")
    corpus, encoder = str(root / "corpus"), str(root / "tiny_bert")
    write_corpus(corpus, dialogues={"train": 8, "validation": 3, "test": 3})
    write_tiny_text_encoder(encoder)
    return {"corpus": corpus, "encoder": encoder, "out": str(root / "runs")}


def push_argv(setup, name):
    return stage_argv(setup["out"], name, setup["corpus"], setup["encoder"], epochs=2,
                      extra=["--push_to_hub", "--hub_model_id", REPO, "--hub_token", TOKEN])


def remote_text(hub, revision, path):
    with urllib.request.urlopen(f"{hub.url}/{REPO}/resolve/{revision}/{path}") as response:
        return response.read().decode("utf-8")


def test_push_needs_a_repo_id(setup, tmp_path):
    from hcam.trainer.run_stage import main

    argv = stage_argv(str(tmp_path), "stage1-text", setup["corpus"], setup["encoder"], extra=["--push_to_hub"])
    with pytest.raises(SystemExit, match="--hub_model_id"):
        main(argv)
    assert not os.path.exists(tmp_path / "stage1-text")  # refused before any training


def test_failed_push_keeps_the_stage_and_rerun_pushes_without_retraining(hub, setup, monkeypatch):
    from transformers import AutoModel

    from hcam.trainer.run_stage import main

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    folder = os.path.join(setup["out"], "stage1-text")
    hub.fail_next("commit")
    with pytest.raises(SystemExit, match="rerun the same command"):
        main(push_argv(setup, "stage1-text"))
    # the stage is finished and loads; the card and picture are there; nothing reached the branch
    files = set(os.listdir(folder))
    assert {"hcam_stage.json", "model.safetensors", "config.json", "README.md", "confusion_matrix.png",
            "pipeline_hcam.py"} <= files, files
    assert "hub_push.json" not in files
    AutoModel.from_pretrained(folder, trust_remote_code=True)
    api = HfApi(endpoint=hub.url)
    assert "model.safetensors" not in api.list_repo_files(REPO, revision="stage1-text")
    weights_mtime = os.stat(os.path.join(folder, "model.safetensors")).st_mtime_ns
    marker_before = open(os.path.join(folder, "hcam_stage.json")).read()

    marker = main(push_argv(setup, "stage1-text"))  # the same command again: push only
    assert marker["stage"] == 1
    assert os.stat(os.path.join(folder, "model.safetensors")).st_mtime_ns == weights_mtime, "retrained"
    assert open(os.path.join(folder, "hcam_stage.json")).read() == marker_before
    assert "model.safetensors" in api.list_repo_files(REPO, revision="stage1-text")
    record = json.load(open(os.path.join(folder, "hub_push.json")))
    assert record["repo_id"] == REPO and record["revision"] == "stage1-text"
    assert remote_text(hub, "stage1-text", "README.md") == open(os.path.join(folder, "README.md")).read()


def test_stage2_branch_holds_the_model_code_pipeline_and_our_card(hub, setup, monkeypatch):
    from transformers import pipeline

    from hcam.trainer.run_stage import main

    if not os.path.isfile(os.path.join(setup["out"], "stage1-text", "hub_push.json")):
        pytest.skip("needs the stage-1 run of the previous test")
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    folder = os.path.join(setup["out"], "stage2-text")
    main(push_argv(setup, "stage2-text"))

    api = HfApi(endpoint=hub.url)
    remote = set(api.list_repo_files(REPO, revision="stage2-text"))
    local_py = {f for f in os.listdir(folder) if f.endswith(".py")}
    assert {"pipeline_hcam.py", "modeling_hcam.py", "configuration_hcam.py", "processing_hcam.py",
            "feature_extraction_hcam.py"} <= local_py
    assert {"model.safetensors", "config.json", "README.md", "confusion_matrix.png", *local_py} <= remote, remote
    assert not [f for f in remote for p in PICKLE_PATTERNS if fnmatch.fnmatch(f, p)], remote
    assert "stage3" not in {b.name for b in api.list_repo_refs(REPO).branches}
    remote_config = json.loads(remote_text(hub, "stage2-text", "config.json"))
    assert remote_config["num_stages"] == 2
    assert "emotion-recognition-in-conversation" in remote_config["custom_pipelines"]

    # the folder's README.md is our card (Trainer wrote none over it), identical to the pushed one
    readme = open(os.path.join(folder, "README.md"), encoding="utf-8").read()
    assert remote_text(hub, "stage2-text", "README.md") == readme
    card = ModelCard(readme)
    assert "hcam" in card.data.tags and "stage2-text" in card.data.tags
    assert TOKEN not in readme and TOKEN not in open(os.path.join(folder, "hcam_stage.json")).read()
    assert "<HUB_TOKEN>" in readme and "python trainer/run_stage.py --stage 2 --modality text" in readme
    assert 'revision="stage2-text"' in readme and "`stage1-text`" in readme  # usage snippet; earlier stage listed
    assert "Stage I text (utterance)" in readme and "Stage II text (dialogue context)" in readme
    assert "Ensemble of the stages" in readme
    # model-index == all_results.json, value for value, on both splits
    results = json.load(open(os.path.join(folder, "all_results.json")))
    _, evals = model_index_to_eval_results(card.data.to_dict()["model-index"])
    found = {}
    for result in evals:
        prefix = {"test": "test", "validation": "eval"}[result.dataset_split]
        key = METRICS[(result.metric_type, (result.metric_args or {}).get("average"))]
        found[f"{prefix}_{key}"] = result.metric_value
    # the card's headline and model-index are what the model outputs: the ensemble (the Trainer's ensemble keys)
    expected = {f"{p}_{m}": results[f"{p}_ensemble_{m}"] for p in ("test", "eval")
                for m in ("weighted_f1", "macro_f1", "accuracy")}
    assert found == expected
    # the confusion matrix on the card is the primary head's on test
    report = json.load(open(os.path.join(folder, "test_report.json")))
    first_row = report["heads"]["text_context"]["confusion_matrix"][0]
    assert f"| **{report['labels'][0]}** | " + " | ".join(map(str, first_row)) + " |" in readme
    with urllib.request.urlopen(f"{hub.url}/{REPO}/resolve/stage2-text/confusion_matrix.png") as response:
        assert response.read()[:8] == b"\x89PNG\r\n\x1a\n"

    # the same command once more: the branch already holds this push, so nothing is committed
    head = hub.branch_head(REPO, "stage2-text")
    main(push_argv(setup, "stage2-text"))
    assert hub.branch_head(REPO, "stage2-text") == head

    classifier = pipeline("emotion-recognition-in-conversation", model=folder, trust_remote_code=True)
    turns = [{"text": "I feel furious today", "speaker": "a"}, {"text": "I feel delighted today", "speaker": "b"}]
    output = classifier({"turns": turns})
    assert len(output) == 2 and all(turn["label"] in report["labels"] for turn in output)
