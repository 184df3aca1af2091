"""A push killed half way (issue 25): the process is killed (SIGKILL) while it uploads the weights to the local Hub
fixture; the branch never holds a half stage, and rerunning the same command completes the push (taking over the
lock the killed run left)."""

import json
import os
import signal
import subprocess
import sys

from huggingface_hub import HfApi
from test_trainer import stage_argv, write_corpus

from local_hub import LocalHubServer

REPO_ID = "org/hcam-killed-push"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_STAGE = os.path.join(REPO, "trainer", "run_stage.py")


def test_a_push_killed_during_the_upload_is_completed_by_the_same_command(tmp_path):
    from hcam.trainer.run_stage import main

    corpus, out = str(tmp_path / "corpus"), str(tmp_path / "runs")
    write_corpus(corpus, dialogues={"train": 3, "validation": 2, "test": 2})
    argv = stage_argv(out, "stage1-audio", corpus, None, epochs=1)
    main(argv)  # a finished stage: the command below only pushes it
    folder = os.path.join(out, "stage1-audio")
    command = [sys.executable, RUN_STAGE, *argv, "--push_to_hub", "--hub_model_id", REPO_ID]

    with LocalHubServer(tmp_path / "hub") as hub:
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1")
        hub.fail_next("lfs_upload", mode="hold")  # the weights' upload is in flight ...
        first = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True)
        try:
            assert hub.wait_held(timeout=300), "the push never started uploading"
            first.send_signal(signal.SIGKILL)  # ... when the process is killed
            first.wait(timeout=60)
        finally:
            if first.poll() is None:
                first.kill()
            hub.release()
        api = HfApi(endpoint=hub.url)
        branches = {ref.name for ref in api.list_repo_refs(REPO_ID).branches}
        if "stage1-audio" in branches:  # created before the upload, holding nothing of the stage
            assert set(api.list_repo_files(REPO_ID, revision="stage1-audio")) <= {".gitattributes"}
        assert set(api.list_repo_files(REPO_ID, revision="main")) <= {".gitattributes"}
        assert not os.path.exists(os.path.join(folder, "hub_push.json"))
        assert os.path.exists(os.path.join(folder, ".hcam_run.lock"))  # the killed run's

        again = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"Taking over the lock on {folder}" in again.stderr and "Pushed" in again.stderr
        files = set(api.list_repo_files(REPO_ID, revision="stage1-audio"))
        assert {"config.json", "model.safetensors", "processor_config.json", "README.md"} <= files, files
        remote = api.hf_hub_download(REPO_ID, "model.safetensors", revision="stage1-audio",
                                     cache_dir=str(tmp_path / "download"))
        with open(remote, "rb") as f, open(os.path.join(folder, "model.safetensors"), "rb") as g:
            assert f.read() == g.read()
        record = json.load(open(os.path.join(folder, "hub_push.json")))
        assert record["repo_id"] == REPO_ID and record["revision"] == "stage1-audio"
        assert not os.path.exists(os.path.join(folder, ".hcam_run.lock"))
