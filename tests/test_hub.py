"""Hub pushes, model cards and remote-code loading, against the local Hub-protocol server on 127.0.0.1.

The server runs in this process (a thread). The main push and every load run in subprocesses whose environment
sets HF_ENDPOINT and HF_HUB_DISABLE_XET before huggingface_hub is imported; the loading process cannot import
this project (sys.modules["hcam"] = None, another cwd, PYTHONPATH empty) and has its own HF_HOME. The retry and
refusal tests push in-process with an explicit endpoint= (the other way push_stage is used).
"""
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import time
import urllib.request
import zlib

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from safetensors.torch import load_file
from tiny import TINY_LABELS, minilm_processor, tiny_hcam_config

from hcam.hub_cards import HCAMCardData, PickleRefusedError, build_model_card, push_stage, render_confusion_matrix_png
from local_hub import LocalHubServer
from hcam.modeling_hcam import HCAMForEmotionRecognition

REPO = "org/hcam-demo"
STAGES = [  # (revision, stage, modalities, pushed to main too)
    ("stage1-audio", 1, ("audio",), False),
    ("stage2-text", 2, ("text",), False),
    ("stage3", 3, ("audio", "text"), True),
]
TURNS = ["I can't believe you did that.", "It was an accident!", "Sure it was."]
SPEAKERS = ["A", "B", "A"]
HERE = os.path.dirname(os.path.abspath(__file__))


def waves():
    rng = np.random.default_rng(0)
    return [(0.3 * np.sin(np.arange(n) / 7.0) + 0.05 * rng.standard_normal(n)).astype(np.float32)
            for n in (4000, 2400, 3200)]


def fake_results(stage, seed):
    rng = np.random.default_rng(seed)
    f1, acc = [round(float(x), 4) for x in rng.uniform(0.3, 0.9, 2)]
    return {"epoch": 3.0, "test_weighted_f1": f1, "test_accuracy": acc, "eval_weighted_f1": round(f1 + 0.01, 4),
            "eval_accuracy": round(acc - 0.02, 4), "test_loss": 1.2345, "test_samples": 57}


def make_card(config, results, revision):
    matrix = [[5, 1, 0, 0], [2, 7, 1, 0], [0, 1, 9, 2], [1, 0, 3, 6]]
    return build_model_card(HCAMCardData(
        config,
        results,
        stage_table=[
            {"name": "Stage I (audio)", "weighted_f1": 0.41, "accuracy": 0.45},
            {"name": "Stage II (text)", "weighted_f1": 0.52, "accuracy": 0.55},
            {"name": "Ensemble", "weighted_f1": results["test_weighted_f1"], "accuracy": results["test_accuracy"]},
        ],
        per_class={label: {"precision": 0.5, "recall": 0.6, "f1": 0.55, "support": 10} for label in TINY_LABELS},
        confusion_matrix=matrix,
        labels=TINY_LABELS,
        setting="demo corpus 4-class, dialogues split 60/20/20",
        command="accelerate launch trainer/run_stage.py --stage 3 --output_dir runs/demo/stage3 --push_to_hub",
        hyperparameters={"learning_rate": 1e-4, "num_train_epochs": 3, "gru_hidden_size": 6},
        dataset_name="IEMOCAP",
        language="en",  # the corpus registry's, in a real run
        repo_id=REPO,
        base_models=["sentence-transformers/all-MiniLM-L6-v2", "/tmp/some/local/folder"],
        revision=revision,
        revisions={name: name for name, *_ in STAGES},
    )), matrix


def save_stage(folder, stage, modalities, seed, processor):
    torch.manual_seed(seed)
    model = HCAMForEmotionRecognition(tiny_hcam_config(stage, modalities)).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    results = fake_results(stage, seed)
    (folder / "all_results.json").write_text(json.dumps(results, indent=2))
    card, matrix = make_card(model.config, results, folder.name)
    render_confusion_matrix_png(matrix, TINY_LABELS, folder / "confusion_matrix.png")
    # What a Trainer checkpoint also holds: none of it may reach the Hub.
    torch.save({"lr": 1e-4}, folder / "training_args.bin")
    torch.save({"state": 1}, folder / "optimizer.pt")
    with torch.no_grad():
        inputs = processor(text=TURNS if "text" in modalities else None,
                           audio=waves() if "audio" in modalities else None, speakers=SPEAKERS)
        logits = model(**inputs).logits
    return model, card, results, logits


def sub_env(hub, home):
    return dict(os.environ, HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HOME=str(home),
                HF_HUB_DISABLE_TELEMETRY="1", HF_TOKEN="hf_local_test_token", PYTHONPATH="",
                TOKENIZERS_PARALLELISM="false")


def run_python(code, env, cwd, *args):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], env=env, cwd=cwd,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-5000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with LocalHubServer(tmp_path_factory.mktemp("hub-root")) as server:
        yield server


@pytest.fixture(scope="module")
def processor():
    return minilm_processor(max_text_tokens=16)


@pytest.fixture(scope="module")
def stages(tmp_path_factory, processor):
    root = tmp_path_factory.mktemp("stages")
    out = {}
    for seed, (name, stage, modalities, _) in enumerate(STAGES):
        folder = root / name
        model, card, results, logits = save_stage(folder, stage, modalities, seed, processor)
        out[name] = dict(folder=folder, model=model, card=card, results=results, logits=logits)
    return out


PUSH = """
import json, sys
from huggingface_hub import ModelCard
from hcam.hub_cards import push_stage
plan = json.loads(sys.argv[1])
for name, folder, card_path, also_main in plan:
    url = push_stage(folder, "org/hcam-demo", name, card=ModelCard.load(card_path), also_main=also_main)
    print(name, url)
"""

LOAD = """
import json, sys
sys.modules["hcam"] = None  # the project must not be importable: everything comes from the Hub repo
import numpy as np, torch
from safetensors.torch import save_file
from transformers import AutoModel, AutoProcessor
from huggingface_hub import ModelCard, hf_hub_download
from huggingface_hub.repocard_data import model_index_to_eval_results
turns, speakers, wave_file, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
waves = list(np.load(wave_file).values())
tensors, report = {}, {}
for revision in ("main", "stage2-text", "stage1-audio"):
    model = AutoModel.from_pretrained("org/hcam-demo", trust_remote_code=True, revision=revision).eval()
    processor = AutoProcessor.from_pretrained("org/hcam-demo", trust_remote_code=True, revision=revision)
    modalities = model.config.modalities
    inputs = processor(text=turns if "text" in modalities else None, audio=waves if "audio" in modalities else None,
                       speakers=speakers)
    with torch.no_grad():
        tensors[revision] = model(**inputs).logits.contiguous()
    card = ModelCard.load(hf_hub_download("org/hcam-demo", "README.md", revision=revision))
    card.validate()  # POST {HF_ENDPOINT}/api/validate-yaml
    results = json.load(open(hf_hub_download("org/hcam-demo", "all_results.json", revision=revision)))
    name, evals = model_index_to_eval_results(card.data.to_dict()["model-index"])
    report[revision] = dict(
        model_class=type(model).__name__, processor_class=type(processor).__name__, stage=model.config.num_stages,
        results=results, card_metrics=[[r.dataset_split, r.metric_type, (r.metric_args or {}).get("average"),
                                        r.metric_value, r.dataset_name] for r in evals],
        library_name=card.data.library_name, pipeline_tag=card.data.pipeline_tag, base_model=card.data.base_model,
        license=card.data.license, has_png=bool(hf_hub_download("org/hcam-demo", "confusion_matrix.png", revision=revision)),
    )
save_file(tensors, out)
print("REPORT" + json.dumps(report))
"""


def test_push_every_stage_and_load_in_a_fresh_process(hub, stages, tmp_path):
    plan = []
    for name, _, _, also_main in STAGES:
        card_path = tmp_path / f"{name}.md"
        stages[name]["card"].save(card_path)
        plan.append([str(stages[name]["folder"]), str(card_path), also_main])
        plan[-1].insert(0, name)
    out = run_python(PUSH, sub_env(hub, tmp_path / "push-home"), tmp_path, json.dumps(plan))
    assert f"{hub.url}/{REPO}/commit/" in out

    api = HfApi(endpoint=hub.url)
    refs = api.list_repo_refs(REPO)
    branches = {b.name: b.target_commit for b in refs.branches}
    assert set(branches) == {"main", "stage1-audio", "stage2-text", "stage3"}
    for revision in branches:
        files = api.list_repo_files(REPO, revision=revision)
        assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))], files
        assert {"config.json", "model.safetensors", "README.md", "confusion_matrix.png", "all_results.json",
                "processor_config.json", "tokenizer.json", "configuration_hcam.py", "modeling_hcam.py",
                "processing_hcam.py", "feature_extraction_hcam.py"} <= set(files), (revision, files)
        info = api.model_info(REPO, revision=revision, files_metadata=True)
        weights = next(s for s in info.siblings if s.rfilename == "model.safetensors")
        assert weights.lfs is not None  # uploaded through the LFS batch API, not inline
    assert api.list_repo_files(REPO, revision="main") == api.list_repo_files(REPO, revision="stage3")

    np.savez(tmp_path / "waves.npz", *waves())
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    out = run_python(LOAD, sub_env(hub, tmp_path / "load-home"), workdir, json.dumps(TURNS), json.dumps(SPEAKERS),
                     tmp_path / "waves.npz", tmp_path / "loaded.safetensors")
    report = json.loads(out.split("REPORT", 1)[1])
    loaded = load_file(tmp_path / "loaded.safetensors")
    for revision, name in (("main", "stage3"), ("stage2-text", "stage2-text"), ("stage1-audio", "stage1-audio")):
        torch.testing.assert_close(loaded[revision], stages[name]["logits"])
        entry = report[revision]
        assert entry["model_class"] == "HCAMForEmotionRecognition" and entry["processor_class"] == "HCAMProcessor"
        assert entry["stage"] == stages[name]["model"].config.num_stages
        # The card's model-index holds exactly the run's numbers.
        results = stages[name]["results"]
        assert entry["results"] == results
        expected = sorted([["test", "f1", "weighted", results["test_weighted_f1"], "IEMOCAP"],
                           ["test", "accuracy", None, results["test_accuracy"], "IEMOCAP"],
                           ["validation", "f1", "weighted", results["eval_weighted_f1"], "IEMOCAP"],
                           ["validation", "accuracy", None, results["eval_accuracy"], "IEMOCAP"]], key=str)
        assert sorted(entry["card_metrics"], key=str) == expected
        assert entry["library_name"] == "transformers" and entry["license"] == "apache-2.0"
        # one modality: its Hub task; speech + text (stage 3): none, since no Hub task classifies both
        assert entry["pipeline_tag"] == {"stage1-audio": "audio-classification", "stage2-text": "text-classification",
                                         "stage3": None}[name]
        assert entry["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
        assert entry["has_png"]


@pytest.mark.parametrize("failure", ["commit:drop", "commit:500"])
def test_interrupted_push_keeps_previous_revision_and_retry_succeeds(hub, stages, tmp_path, failure):
    repo = f"org/hcam-retry-{failure.replace(':', '-').replace('_', '-')}"
    source = stages["stage2-text"]
    push_stage(source["folder"], repo, "stage2-text", card=source["card"], endpoint=hub.url)
    before = hub.branch_head(repo, "stage2-text")
    old_weights = (source["folder"] / "model.safetensors").read_bytes()

    # A retrained checkpoint: other weights and results.
    folder = tmp_path / "retrained"
    torch.manual_seed(99)
    HCAMForEmotionRecognition(tiny_hcam_config(2, ("text",))).save_pretrained(folder)
    for name in ("processor_config.json", "tokenizer.json", "tokenizer_config.json", "processing_hcam.py",
                 "feature_extraction_hcam.py"):
        (folder / name).write_bytes((source["folder"] / name).read_bytes())
    new_weights = (folder / "model.safetensors").read_bytes()
    assert new_weights != old_weights

    kind, mode = failure.split(":")
    hub.fail_next(kind, mode=mode)  # the connection dies after the commit body was sent / the server fails
    expected = {"drop": "Server disconnected without sending a response", "500": "500 Internal Server Error"}[mode]
    with pytest.raises(Exception, match=expected):
        push_stage(folder, repo, "stage2-text", card=None, endpoint=hub.url, also_main=True)
    assert hub.branch_head(repo, "stage2-text") == before  # nothing half-applied
    api = HfApi(endpoint=hub.url)
    cache = tmp_path / "cache"
    path = api.hf_hub_download(repo, "model.safetensors", revision="stage2-text", cache_dir=cache)
    assert open(path, "rb").read() == old_weights
    assert "README.md" in api.list_repo_files(repo, revision="stage2-text")

    url = push_stage(folder, repo, "stage2-text", card=None, endpoint=hub.url, also_main=True)  # the retry
    after = hub.branch_head(repo, "stage2-text")
    assert after != before and url.endswith(after)
    for revision in ("stage2-text", "main"):
        path = api.hf_hub_download(repo, "model.safetensors", revision=revision, cache_dir=cache)
        assert open(path, "rb").read() == new_weights
    # The retrained folder has no card and no results: the revision now holds exactly that folder.
    files = set(api.list_repo_files(repo, revision="stage2-text"))
    assert "README.md" not in files and "all_results.json" not in files and "model.safetensors" in files
    # Retrying once more changes nothing.
    push_stage(folder, repo, "stage2-text", card=None, endpoint=hub.url)
    assert hub.branch_head(repo, "stage2-text") == after


def test_pickles_are_never_uploaded(hub, stages, tmp_path):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    torch.save({"w": torch.zeros(2)}, pickled / "pytorch_model.bin")
    with pytest.raises(PickleRefusedError, match="pytorch_model.bin"):
        push_stage(pickled, "org/hcam-pickle", "stage1-text", card=None, endpoint=hub.url)
    disguised = tmp_path / "disguised"
    disguised.mkdir()
    (disguised / "config.json").write_text("{}")
    torch.save({"w": torch.zeros(2)}, disguised / "model.safetensors")  # a pickle under a safetensors name
    with pytest.raises(PickleRefusedError, match="not a safetensors file"):
        push_stage(disguised, "org/hcam-pickle", "stage1-text", card=None, endpoint=hub.url)
    with pytest.raises(Exception):
        HfApi(endpoint=hub.url).repo_info("org/hcam-pickle")  # refused before anything was created

    folder = stages["stage1-audio"]["folder"]
    assert (folder / "training_args.bin").exists() and (folder / "optimizer.pt").exists()
    push_stage(folder, "org/hcam-pickle", "stage1-audio", card=None, endpoint=hub.url)
    files = HfApi(endpoint=hub.url).list_repo_files("org/hcam-pickle", revision="stage1-audio")
    assert "model.safetensors" in files and not [f for f in files if f.endswith((".bin", ".pt"))]


def test_server_rejects_invalid_card_metadata_and_keeps_revision(hub, stages, tmp_path):
    source = stages["stage1-audio"]
    push_stage(source["folder"], "org/hcam-badcard", "stage1-audio", card=source["card"], endpoint=hub.url)
    before = hub.branch_head("org/hcam-badcard", "stage1-audio")
    bad = ModelCard("---\nlicense:\n- apache-2.0\n- mit\nbase_model: {audio: x}\n---\n# x\n")
    with pytest.raises(ValueError, match="Invalid metadata"):
        push_stage(source["folder"], "org/hcam-badcard", "stage1-audio", card=bad, endpoint=hub.url)
    assert hub.branch_head("org/hcam-badcard", "stage1-audio") == before


def test_card_content_and_metadata(stages):
    card, results = stages["stage3"]["card"], stages["stage3"]["results"]
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and "pipeline_tag" not in data  # speech + text: no Hub task
    assert data["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"  # the local folder is left out
    assert "hcam" in data["tags"] and data["license"] == "apache-2.0" and data["language"] == "en"
    metrics = {(r["dataset"]["split"], m["type"], (m.get("args") or {}).get("average")): m["value"]
               for r in data["model-index"][0]["results"] for m in r["metrics"]}
    assert metrics == {("test", "f1", "weighted"): results["test_weighted_f1"],
                       ("test", "accuracy", None): results["test_accuracy"],
                       ("validation", "f1", "weighted"): results["eval_weighted_f1"],
                       ("validation", "accuracy", None): results["eval_accuracy"]}
    text = card.text
    for needle in ("Stage I (audio)", "Ensemble", "| **sad** | 0 | 1 | 9 | 2 |", "confusion_matrix.png",
                   "accelerate launch trainer/run_stage.py --stage 3", "`learning_rate` | `0.0001`",
                   "demo corpus 4-class, dialogues split 60/20/20", 'AutoModel.from_pretrained("org/hcam-demo", '
                   'trust_remote_code=True, revision="stage3")', "Limitations", "acted", "`stage2-text`",
                   f"{100 * results['test_weighted_f1']:.2f}", "/tmp/some/local/folder"):
        assert needle in text, needle
    with pytest.raises(ValueError, match="4x4"):
        make_card_with_matrix([[1, 2], [3, 4]])


def make_card_with_matrix(matrix):
    return build_model_card(HCAMCardData({"modalities": ["text"], "num_stages": 1}, {}, stage_table=[], per_class={},
                                         confusion_matrix=matrix, labels=TINY_LABELS, setting="s", command="c",
                                         hyperparameters={}, dataset_name="MELD", repo_id="org/x", base_models=None))


def read_png(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks.setdefault(kind, b"")
        chunks[kind] += body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = 1 + 3 * width
    rows = [raw[y * stride + 1:(y + 1) * stride] for y in range(height)]
    return width, height, depth, colour, rows


def test_confusion_matrix_png(tmp_path):
    path = render_confusion_matrix_png([[9, 1, 0], [0, 5, 5], [0, 0, 0]], ["a", "b", "c"], tmp_path / "cm.png",
                                       use_matplotlib=False, cell=10, border=1)  # the fallback without matplotlib
    width, height, depth, colour, rows = read_png(path)
    assert (width, height, depth, colour) == (34, 34, 8, 2)

    def centre(i, j):
        x, y = 1 + j * 11 + 5, 1 + i * 11 + 5
        return tuple(rows[y][3 * x:3 * x + 3])

    assert sum(centre(0, 0)) < sum(centre(1, 1)) < sum(centre(0, 1)) < sum(centre(0, 2))  # darker = larger share
    assert centre(1, 1) == centre(1, 2)  # 5 and 5 of the same row
    assert centre(2, 2) == (255, 255, 255)  # an empty row stays white
    with pytest.raises(ValueError):
        render_confusion_matrix_png([[1, 2]], ["a", "b"], tmp_path / "bad.png")


def test_server_checks_lfs_uploads_and_commits(hub, stages):
    """A wrong or truncated LFS upload is not stored, and a commit naming a missing LFS object is refused."""
    api = HfApi(endpoint=hub.url)
    api.create_repo("org/hcam-raw", exist_ok=True)
    data = b"some weights" * 100
    oid = hashlib.sha256(data).hexdigest()
    put = urllib.request.Request(f"{hub.url}/lfs/upload/{oid}?size={len(data)}", data=data[:-1] + b"X", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(put, timeout=10)
    assert err.value.code == 400
    head = hub.branch_head("org/hcam-raw")
    body = (json.dumps({"key": "header", "value": {"summary": "x"}}) + "\n"
            + json.dumps({"key": "lfsFile", "value": {"path": "model.safetensors", "algo": "sha256", "oid": oid,
                                                      "size": len(data)}}) + "\n").encode()
    commit = urllib.request.Request(f"{hub.url}/api/models/org/hcam-raw/commit/main", data=body, method="POST",
                                    headers={"Content-Type": "application/x-ndjson"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(commit, timeout=10)
    assert err.value.code == 400 and b"was not uploaded" in err.value.read()
    assert hub.branch_head("org/hcam-raw") == head

    # A client killed halfway through sending a (valid) commit body changes nothing; the full body commits.
    body = (json.dumps({"key": "header", "value": {"summary": "add notes"}}) + "\n"
            + json.dumps({"key": "file", "value": {"path": "notes.txt", "encoding": "base64",
                                                   "content": "aGVsbG8="}}) + "\n").encode()
    host, port = hub.url.split("//")[1].split(":")
    request = (f"POST /api/models/org/hcam-raw/commit/main HTTP/1.1\r\nHost: {host}\r\n"
               f"Content-Type: application/x-ndjson\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request + body[: len(body) // 2])
    time.sleep(0.3)
    assert hub.branch_head("org/hcam-raw") == head
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request + body)
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
    assert hub.branch_head("org/hcam-raw") != head
    assert api.list_repo_files("org/hcam-raw") == [".gitattributes", "notes.txt"]


def test_command_line_server_prints_its_url(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "hcam.hub_cards.local_hub", "--port", "0", "--root",
                                str(tmp_path / "root")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        HfApi(endpoint=url).create_repo("org/cli")
        assert HfApi(endpoint=url).list_repo_files("org/cli") == [".gitattributes"]
        request = urllib.request.Request(f"{url}/api/models/org/missing", method="GET")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=10)
        assert err.value.code == 404 and err.value.headers["X-Error-Code"] == "RepoNotFound"
    finally:
        process.terminate()
        process.wait(timeout=10)


def request_status(url, method="GET", body=None):
    """(status, headers) of one request, without raising on HTTP errors."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as err:
        return err.code, err.headers


def test_server_refuses_repo_ids_and_revisions_that_leave_its_root(tmp_path):
    """Every repo id goes through huggingface_hub's validate_repo_id and every revision through a branch/commit
    pattern before the disk is touched: a traversal is a 400, and nothing outside the root is read or written."""
    outside = tmp_path / "x"
    outside.mkdir()
    (outside / "refs.json").write_text(json.dumps({"branches": {"main": "0" * 40}}))
    root = tmp_path / "a" / "b" / "root"
    with LocalHubServer(root) as hub:
        assert hub.url.startswith("http://127.0.0.1:")
        HfApi(endpoint=hub.url).create_repo("org/ok")
        before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        attempts = [
            ("POST", "/api/repos/create", {"organization": "..", "name": "x"}),
            ("POST", "/api/repos/create", {"organization": "../../..", "name": "x"}),
            ("POST", "/api/repos/create", {"name": "..%2F..%2Fx"}),
            ("GET", "/api/models/..%2F../..%2Fx", None),
            ("GET", "/api/models/%2E%2E/%2E%2E/refs", None),
            ("GET", "/%2E%2E/%2E%2E/resolve/main/refs.json", None),
            ("POST", "/api/models/%2E%2E/x/commit/main", None),
            ("GET", "/api/models/org/ok/tree/..%2F..%2F..", None),
            ("GET", "/org/ok/resolve/..%2F..%2Fx/refs.json", None),
            ("GET", "/org/ok/resolve/main/..%2F..%2Fx%2Frefs.json", None),
            ("POST", "/api/models/org/ok/branch/..%2F..%2Fx", {}),
        ]
        for method, path, body in attempts:
            status, _ = request_status(hub.url + path, method, body)
            assert status == 400, (method, path, status)
        # There is no delete endpoint at all (nothing hcam or huggingface_hub calls for a push needs one).
        status, _ = request_status(hub.url + "/api/repos/delete", "POST", {"organization": "..", "name": "x"})
        assert status == 404
        # A revision cannot smuggle a header into the answer.
        status, headers = request_status(hub.url + "/org/ok/resolve/main%0D%0AX-Injected:%201/README.md")
        assert status == 400 and headers.get("X-Injected") is None
        assert "\r" not in headers["X-Error-Message"] and "\n" not in headers["X-Error-Message"]
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
        assert (outside / "refs.json").is_file()
    with pytest.raises(TypeError):
        LocalHubServer(root, host="0.0.0.0")  # no way to listen beyond 127.0.0.1


def test_demo_serves_its_hub_from_the_installed_package(tmp_path):
    """The demo's Hub server is product code (hcam.hub_cards.local_hub), not a test fixture: it needs no clone."""
    from hcam.hub_cards.local_hub import LocalHubServer as ProductServer
    from hcam.trainer import run_demo

    hub = run_demo.local_hub_server(tmp_path / "hub").start()
    try:
        assert type(hub) is ProductServer and not hasattr(hub, "fail_next")  # the tests' failing writes stay in tests/
        assert hub.url.startswith("http://127.0.0.1:")
        HfApi(endpoint=hub.url).create_repo("org/hcam-demo")
        assert HfApi(endpoint=hub.url).list_repo_files("org/hcam-demo") == [".gitattributes"]
    finally:
        hub.stop()


def test_the_card_carries_no_home_directory(monkeypatch, tmp_path):
    home, work = tmp_path / "home" / "alice", tmp_path / "home" / "alice" / "work"
    work.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    card = build_model_card(HCAMCardData(
        {"modalities": ["text"], "num_stages": 1, "text_encoder_name_or_path": f"{home}/models/minilm"}, {},
        stage_table=[], per_class={}, confusion_matrix=[[1] * 4] * 4, labels=TINY_LABELS, setting="s",
        command=f"python trainer/run_stage.py --data_dir {home}/data/IEMOCAP --output_dir {work}/runs/stage1-text",
        hyperparameters={"cache": f"{home}/.cache/x"}, dataset_name="IEMOCAP", repo_id="org/x",
        base_models=[f"{home}/models/minilm"]))
    text = str(card)
    assert str(home) not in text
    assert "--data_dir ~/data/IEMOCAP --output_dir runs/stage1-text" in text and "`~/models/minilm`" in text


def test_card_leads_with_what_the_model_outputs(tmp_path):
    """The headline, model-index, per-class table and confusion matrix are the ensemble (the model's `logits`, the
    pipeline, hcam-predict) and say so; the selected head's own score is named next to it; usage shows the pipeline
    and hcam-predict; a generated corpus gets no annotator caveat."""
    from hcam.processing.corpora import get_corpus

    results = {"test_weighted_f1": 0.8301, "test_accuracy": 0.84, "test_ensemble_weighted_f1": 0.851,
               "test_ensemble_accuracy": 0.86, "eval_weighted_f1": 0.8, "eval_ensemble_weighted_f1": 0.81}
    demo = get_corpus("demo")
    card = build_model_card(HCAMCardData(
        {"modalities": ["audio", "text"], "num_stages": 3}, results, stage_table=[], per_class={}, confusion_matrix=[[1]],
        labels=["happy"], setting="emotion, 1 label", command="python trainer/run_stage.py", hyperparameters={},
        dataset_name=demo.display_name, repo_id="org/hcam-demo", selected_head="Stage III (fusion)",
        dataset_nature=demo.nature, labels_note=demo.labels_note))
    data = card.data.to_dict()
    metrics = {(r["dataset"]["split"], m["type"], m["name"]): m["value"]
               for r in data["model-index"][0]["results"] for m in r["metrics"]}
    assert metrics == {("test", "f1", "Weighted F1 (ensemble)"): 0.851, ("test", "accuracy", "Accuracy (ensemble)"): 0.86,
                       ("validation", "f1", "Weighted F1 (ensemble)"): 0.81}
    text = card.text
    assert "Test weighted F1 of the model's output (the ensemble of its stages" in text and ": 85.10" in text
    assert "Stage III (fusion) alone, the head the checkpoint was selected on: 83.01" in text
    assert "### Per-class scores (ensemble)" in text and "(ensemble; counts on the test split)" in text
    assert 'pipeline("emotion-recognition-in-conversation", model="org/hcam-demo", trust_remote_code=True)' in text
    assert '{"audio": "turn0.wav", "text": "Hi.", "speaker": "A"}' in text
    assert "hcam-predict --model org/hcam-demo" in text
    assert "Labels are given by construction" in text and "Annotators disagree" not in text
    stage = build_model_card(HCAMCardData(
        {"modalities": ["text"], "num_stages": 2}, {"test_weighted_f1": 0.5}, stage_table=[], per_class={},
        confusion_matrix=[[1]], labels=["happy"], setting="s", command="c", hyperparameters={}, dataset_name="IEMOCAP",
        repo_id="org/x", revision="stage2-text", selected_head="Stage II text (dialogue context)"))
    assert stage.data.pipeline_tag == "text-classification"
    assert "Test weighted F1 of Stage II text (dialogue context): 50.00" in stage.text  # no ensemble keys: says whose
    assert "Annotators disagree" in stage.text and "this stage is the `stage2-text` revision" in stage.text
    one_head = build_model_card(HCAMCardData(
        {"modalities": ["text"], "num_stages": 1}, {"test_weighted_f1": 0.5, "test_ensemble_weighted_f1": 0.5},
        stage_table=[], per_class={}, confusion_matrix=[[1]], labels=["happy"], setting="s", command="c",
        hyperparameters={}, dataset_name="IEMOCAP", repo_id="org/x", selected_head="Stage I text (utterance)"))
    assert "Test weighted F1 of the model's output" in one_head.text and "the head the checkpoint was selected on:" \
        not in one_head.text  # stage I: its ensemble is its one head


def test_card_of_a_stage_trained_on_a_moved_datasets_folder_still_describes_its_data():
    """A stage trained on a save_to_disk folder records the folder's path; the card (rebuilt at a later push) still
    describes the data when that folder has moved since."""
    from hcam.trainer.hub import describe_data

    marker = {"data": {"corpus": "/nowhere/any/more/my_calls", "protocol": "the splits of the folder my_calls",
                       "splits": {"train": {"dialogues": 3, "utterances": 9}}}}
    corpus, phrase, lines = describe_data(marker, ["a", "b"])
    assert corpus.display_name == "my_calls" and phrase == "2 labels"
    assert any("the splits of the folder my_calls" in line for line in lines)
