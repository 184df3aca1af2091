"""hcam-app in a real browser: the system's headless Chromium, driven by Selenium, uploads a recording made from demo
clips, waits for the analysis, and finds the turns' labels in the table and the timeline picture; a screenshot is
saved (to $HCAM_SCREENSHOT_DIR too, when set). Also the page's functions without a browser: the live replay of a
causal model, and the clear message for a bidirectional one.

Chromium and its driver come from the system packages (`apt-get install -y chromium chromium-driver`): .ci/run installs
them when they are missing (about a minute); elsewhere the browser test is skipped without them, and fails under CI.
"""
import os
import shutil
import socket
import time

import pytest
from demo_recording import DEMO, clips_of, two_speaker_call
from tiny import TINY_LABELS, save_checkpoint


pytest.importorskip("gradio", reason='hcam-app needs pip install "hcam[app]" (make setup installs it)')
pytest.importorskip("silero_vad", reason='hcam-app needs pip install "hcam[app]" (make setup installs it)')
pytestmark = pytest.mark.skipif(not (DEMO / "test.csv").is_file(), reason="the demo corpus (data/demo) is missing")


def _browser():
    """(chromium, chromedriver) paths from the system packages (.ci/run installs them), or Nones."""
    return shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("selenium", reason="the browser test needs selenium (the dev extra; make setup installs it)")
    chromium, driver_path = _browser()
    if not chromium or not driver_path:
        message = "no chromium/chromedriver: apt-get install -y chromium chromium-driver (.ci/run does, as root)"
        if os.environ.get("CI"):  # CI must run the browser test, never skip it
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # never let selenium-manager look for a browser online
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,2400"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny audio-only checkpoints (no ASR needed): bidirectional and causal stage 2."""
    folders = {}
    for context in ("bidirectional", "causal"):
        folder = tmp_path_factory.mktemp(f"app-{context}")
        save_checkpoint(folder, 2, ("audio",), context=context)
        folders[context] = str(folder)
    return folders


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    voices = {"alex": clips_of("alex", 8), "blair": clips_of("blair", 8)}
    path = tmp_path_factory.mktemp("app-rec") / "call.wav"
    _, gold = two_speaker_call(voices, path)
    return str(path), gold


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_page_in_a_real_browser(browser, checkpoints, recording, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from hcam.trainer.app import build_app
    from hcam.trainer.recordings import predict_recording

    path, gold = recording
    expected = [row["label"] for row in predict_recording(path, checkpoints["bidirectional"])]
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    port = _free_port()
    page = build_app(checkpoints["bidirectional"])
    page.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(browser, 60)
        upload = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#recording input[type=file]"))[0]
        upload.send_keys(path)
        wait.until(lambda d: "KB" in d.find_element(By.ID, "recording").text)  # uploaded: its size is shown
        browser.find_element(By.ID, "analyse-recording").click()

        def table_labels(driver):  # the table's cells, one per line of its text, the header first
            labels = [line for line in driver.find_element(By.ID, "turns").text.splitlines() if line in TINY_LABELS]
            return labels if len(labels) == len(gold) else False

        assert WebDriverWait(browser, 240).until(table_labels) == expected
        image = WebDriverWait(browser, 60).until(
            lambda d: [i for i in d.find_elements(By.CSS_SELECTOR, "#timeline img") if i.get_attribute("src")])
        assert browser.execute_script("return arguments[0].naturalWidth", image[0]) > 300
        assert "8 turns, 2 speaker(s)" in browser.find_element(By.ID, "recording-status").text
        assert browser.find_elements(By.CSS_SELECTOR, "#download a")  # the JSON lines to download
        shot = tmp_path / "hcam-app.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("HCAM_SCREENSHOT_DIR"):
            os.makedirs(os.environ["HCAM_SCREENSHOT_DIR"], exist_ok=True)
            shutil.copy(shot, os.environ["HCAM_SCREENSHOT_DIR"])
    finally:
        page.close()


def test_live_replay_streams_turn_by_turn(checkpoints, recording):
    from hcam.trainer.app import replay_live
    from hcam.trainer.predict import PredictError
    from hcam.trainer.recordings import predict_recording

    path, gold = recording
    started = time.monotonic()
    updates = list(replay_live(checkpoints["causal"], path, 0, 0.0, "none"))
    assert [len(table) for table, _ in updates] == list(range(1, len(gold) + 1))  # one more turn each time
    offline = predict_recording(path, checkpoints["causal"], asr="none")
    assert [row[5] for row in updates[-1][0]] == [r["label"] for r in offline]  # a causal model: the same labels
    assert time.monotonic() - started < 60
    with pytest.raises(ValueError, match="needs a causal model"):
        next(replay_live(checkpoints["bidirectional"], path, 0, 0.0, "none"))
    with pytest.raises(PredictError, match="choose a model first"):
        next(replay_live("", path))


def test_conversation_tab_reads_clips_and_transcripts_like_hcam_predict(checkpoints, tmp_path):
    """The Conversation tab: one clip per turn (uploads land in temporary folders) and a transcripts table; the same
    rows as hcam-predict --audio_dir --transcripts."""
    import csv
    import json

    from hcam.trainer.app import analyse_conversation
    from hcam.trainer.predict import main

    with open(DEMO / "test.csv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f)]
    rows = [r for r in rows if r["dialogue_id"] == rows[0]["dialogue_id"]]
    uploads = []
    for index, row in enumerate(rows):
        folder = tmp_path / f"upload{index}"
        folder.mkdir()
        uploads.append(str(folder / os.path.basename(row["audio"])))
        shutil.copy(DEMO / row["audio"], uploads[-1])
    table = tmp_path / "transcripts.csv"
    with open(table, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "text", "speaker"])
        writer.writerows([os.path.basename(r["audio"]), r["text"], r["speaker"]] for r in rows)
    image, shown, jsonl, status = analyse_conversation(checkpoints["bidirectional"], uploads, str(table), "none")
    assert status == f"{len(rows)} turns" and os.path.getsize(image) > 1000
    assert [row[3] for row in shown] == [r["speaker"] for r in rows]
    folder = tmp_path / "clips"
    folder.mkdir()
    for upload in uploads:
        shutil.copy(upload, folder)
    assert main(["--model", checkpoints["bidirectional"], "--audio_dir", str(folder), "--transcripts", str(table),
                 "--output", str(tmp_path / "cli.jsonl"), "--no_progress"]) == 0
    cli = [json.loads(line)["label"] for line in (tmp_path / "cli.jsonl").read_text().splitlines()]
    assert [row[5] for row in shown] == cli
    assert [json.loads(line)["label"] for line in open(jsonl, encoding="utf-8")] == cli
