"""One run per output folder (issue 25): a second run stops at once naming the first; a killed run's lock is taken
over. Tested with real processes."""

import errno
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from hcam.trainer.run_lock import LOCK_FILE, OutputFolderBusy, output_folder_lock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_STAGE = os.path.join(REPO, "trainer", "run_stage.py")

HOLD = textwrap.dedent("""
    import sys
    from hcam.trainer.run_lock import output_folder_lock
    with output_folder_lock(sys.argv[1], command="python trainer/run_stage.py --output_dir " + sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.read()  # hold the lock until the test closes our stdin (or kills us)
""")


@pytest.fixture
def holder(tmp_path):
    """A real process holding the lock on tmp_path/run (closed, or killed, by the test)."""
    folder = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert process.stdout.readline().strip() == "locked"
    yield folder, process
    if process.poll() is None:
        process.kill()
    process.wait()


def test_a_second_run_on_the_same_folder_stops_at_once_naming_the_first(holder, tmp_path):
    from test_trainer import TINY, data_flags, write_corpus

    folder, process = holder
    corpus = str(tmp_path / "corpus")
    write_corpus(corpus, dialogues={"train": 2, "validation": 1}, turns=2)
    started = time.time()
    second = subprocess.run([sys.executable, RUN_STAGE, "--stage", "1", "--modality", "audio", *data_flags(corpus)[:4],
                             "--output_dir", str(folder), *TINY], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=REPO)
    assert second.returncode != 0
    assert f"is in use by another run: process {process.pid} on host {socket.gethostname()}" in second.stderr, \
        second.stderr[-3000:]
    assert "Traceback" not in second.stderr
    assert time.time() - started < 120  # at once: no data read, no model built
    assert sorted(os.listdir(folder)) == [LOCK_FILE]  # the second run wrote nothing there
    assert json.loads((folder / LOCK_FILE).read_text())["pid"] == process.pid  # and left the first's lock alone

    process.stdin.close()  # the first run ends: its lock goes with it, and the folder is free again
    assert process.wait(timeout=60) == 0
    assert not (folder / LOCK_FILE).exists()
    with output_folder_lock(str(folder)) as mine:
        assert mine["pid"] == os.getpid()


def test_the_same_process_is_refused_too(holder):
    folder, process = holder
    with pytest.raises(OutputFolderBusy, match=f"process {process.pid} on host"):
        with output_folder_lock(str(folder)):
            pass


def test_the_lock_of_a_killed_run_is_taken_over_with_a_warning(holder, caplog):
    folder, process = holder
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert json.loads((folder / LOCK_FILE).read_text())["pid"] == process.pid  # left behind
    caplog.set_level(logging.WARNING, logger="hcam")
    with output_folder_lock(str(folder), command="second") as mine:
        assert json.loads((folder / LOCK_FILE).read_text()) == mine and mine["pid"] == os.getpid()
    warnings = [r.getMessage() for r in caplog.records if "Taking over the lock" in r.getMessage()]
    assert len(warnings) == 1 and f"process {process.pid} on host {socket.gethostname()}" in warnings[0]
    assert not (folder / LOCK_FILE).exists()  # released at the end of the block


def test_without_flock_the_holders_process_id_decides(tmp_path, monkeypatch, caplog):
    """File systems without flock: a holder on this host that is gone is stale; a live one, or one on another host
    (which cannot be checked), keeps the folder."""
    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    folder = tmp_path / "run"
    folder.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        for pid, host, busy in ((alive.pid, socket.gethostname(), True), (gone.pid, "elsewhere", True),
                                (gone.pid, socket.gethostname(), False)):
            (folder / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": host, "started": "earlier"}))
            if busy:
                with pytest.raises(OutputFolderBusy, match=f"process {pid} on host {host}"):
                    with output_folder_lock(str(folder)):
                        pass
            else:
                caplog.set_level(logging.WARNING, logger="hcam")
                with output_folder_lock(str(folder)) as mine:
                    assert mine["pid"] == os.getpid()
                assert any("Taking over the lock" in r.getMessage() for r in caplog.records)
    finally:
        alive.kill()
        alive.wait()


def test_only_the_main_process_takes_the_lock(holder):
    """The other processes of a torchrun/accelerate run (process index > 0) take no lock (their main one holds it)."""
    folder, _ = holder
    with output_folder_lock(str(folder), enabled=False) as mine:
        assert mine is None

