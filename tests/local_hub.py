"""The tests' Hub server: hcam's local Hub-protocol server (`hcam.hub_cards.local_hub`) whose writes can be made to
fail on demand, to check that a failed or interrupted push leaves every branch where it was.

    with LocalHubServer(root) as hub:
        hub.fail_next("commit")               # the next commit answers HTTP 500
        hub.fail_next("lfs_upload", mode="drop")  # the next upload's connection closes without an answer
        hub.fail_next("lfs_upload", mode="hold"); hub.wait_held(); ...kill the client...; hub.release()
"""
from __future__ import annotations

import threading

from hcam.hub_cards import local_hub
from hcam.hub_cards.local_hub import WRITE_KINDS, DropConnection, HubError

MODES = ("500", "drop", "hold")


class _FaultyServer(local_hub._Server):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._failures: dict[str, list[str]] = {}
        self._failures_lock = threading.Lock()
        self.held, self.released = threading.Event(), threading.Event()  # fail_next(..., mode="hold")

    def before_write(self, kind: str) -> None:
        with self._failures_lock:
            queue = self._failures.get(kind)
            mode = queue.pop(0) if queue else None
        if mode == "hold":  # a request in flight while the test kills its client; then no answer
            self.held.set()
            self.released.wait(timeout=600)
            raise DropConnection()
        if mode == "drop":
            raise DropConnection()
        if mode == "500":
            raise HubError(500, f"Injected failure of {kind} (local hub fail_next)")


class LocalHubServer(local_hub.LocalHubServer):
    """`hcam.hub_cards.local_hub.LocalHubServer` with `fail_next`, `wait_held` and `release`."""

    server_class = _FaultyServer

    def fail_next(self, kind: str, times: int = 1, mode: str = "500") -> None:
        """The next ``times`` requests of ``kind`` ("commit", "lfs_upload") fail: "500" answers HTTP 500, "drop"
        closes the connection without an answer, "hold" keeps the request waiting (``held`` is set, before an
        upload's body is read) until ``release()`` and then closes it without an answer: the test kills the client
        meanwhile."""
        if kind not in WRITE_KINDS or mode not in MODES:
            raise ValueError(f"fail_next: kind must be one of {WRITE_KINDS} and mode one of {MODES}, got {kind!r}, "
                             f"{mode!r}")
        if mode == "hold":
            self._server.held.clear()
            self._server.released.clear()
        with self._server._failures_lock:
            self._server._failures.setdefault(kind, []).extend([mode] * times)

    def wait_held(self, timeout: float = 300) -> bool:
        """Whether a request held by ``fail_next(..., mode="hold")`` arrived within ``timeout`` seconds."""
        return self._server.held.wait(timeout)

    def release(self) -> None:
        """Let the held requests go (each closes its connection without an answer)."""
        self._server.released.set()

    def stop(self) -> None:
        self._server.released.set()  # no request stays held
        super().stop()
