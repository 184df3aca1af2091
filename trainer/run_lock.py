"""One run per output folder: `run_stage.py` holds `<output_dir>/.hcam_run.lock` while it runs.

The lock is an advisory `flock` on that file (the kernel drops it when the process ends, however it ends), and the
file names its holder (process id, host, start time, command). A second run on the same folder stops at once with a
message naming the first; a lock file left by a killed run is taken over with a warning naming it. Where the file
system has no `flock` (some network mounts), the holder's process id is checked instead: a holder on this host that
is no longer alive is stale, one on another host is respected (delete the file if that run is gone).

Only the main process of a multi-process run (torchrun / accelerate: process index 0) takes the lock; the others
write nothing of their own in the folder.
"""

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import socket

logger = logging.getLogger(__name__)

LOCK_FILE = ".hcam_run.lock"


class OutputFolderBusy(SystemExit):
    """Another run holds the output folder (the message names it)."""


def _holder_text(holder):
    if not holder:
        return "a run that left no details"
    return (f"process {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"
            + (f" ({holder['command']})" if holder.get("command") else ""))


def _read_holder(fd):
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 65536):
        raw += chunk
    try:
        holder = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _busy(output_dir, holder):
    return OutputFolderBusy(
        f"--output_dir {output_dir} is in use by another run: {_holder_text(holder)}. Two runs writing one folder "
        f"spoil each other's checkpoints. Wait for that run to end (rerunning this command then resumes or reuses its "
        f"work), stop it, or choose another --output_dir. If that run is gone, delete "
        f"{os.path.join(output_dir, LOCK_FILE)}."
    )


@contextlib.contextmanager
def output_folder_lock(output_dir, enabled=True, command=None):
    """Hold the lock on `output_dir` for the duration of the block (creating the folder); OutputFolderBusy when
    another live run holds it. `enabled=False` (the other processes of a multi-process run) does nothing."""
    if not enabled:
        yield None
        return
    created = not os.path.isdir(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_FILE)
    host, pid = socket.gethostname(), os.getpid()
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise _busy(output_dir, holder) from None
        except OSError as error:  # no flock on this file system: judge by the holder's process id
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                os.close(fd)
                raise
            locked = False
        # the file we locked must still be the one at `path` (a run that ended may have removed it meanwhile)
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    previous = _read_holder(fd)
    if previous and previous.get("pid") != pid:
        if not locked and (previous.get("host") != host or _alive(previous.get("pid", -1))):
            os.close(fd)
            raise _busy(output_dir, previous)
        logger.warning("Taking over the lock on %s left by a run that ended without releasing it (%s).",
                       output_dir, _holder_text(previous))
    holder = {"pid": pid, "host": host, "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "command": command}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode("utf-8"), 0)
    os.fsync(fd)
    try:
        yield holder
    finally:
        try:
            os.remove(path)  # before the lock is dropped: a run that opens the path after this gets a new file
        except OSError:
            pass
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(output_dir)  # only when empty: a run refused at once leaves no folder behind
