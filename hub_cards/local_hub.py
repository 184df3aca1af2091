"""A Hugging Face Hub-protocol server on 127.0.0.1: where `make demo` pushes, and the tests too.

Try a push and a load with no network and no account: `make demo` pushes every stage here, and the tests run
pushes and `from_pretrained(..., revision=...)` against it (the real Hub is unreachable on CI machines). It serves
model and dataset repos (the same endpoints under /api/datasets/ and /datasets/), and only the HTTP endpoints that
hcam's push (`hcam.hub_cards.push_stage`), `huggingface_hub` 2.4, `datasets` and transformers' loading call:

    POST /api/repos/create                        create_repo (409 + url when it exists)
    GET  /api/models/{repo}[/revision/{rev}]      repo_info / model_info (siblings and their LFS metadata, sha)
    GET  /api/models/{repo}/refs                  list_repo_refs
    POST /api/models/{repo}/branch/{branch}       create_branch (startingPoint)
    GET  /api/models/{repo}/tree/{rev}[/{path}]   list_repo_files / list_repo_tree (?recursive=)
    POST /api/models/{repo}/preupload/{rev}       upload mode per file: "lfs" or "regular", and the remote oid
    POST /{repo}.git/info/lfs/objects/batch       LFS batch API, "basic" uploads only
    PUT  /lfs/upload/{oid}    POST /lfs/verify    the hrefs handed out by the batch API
    POST /api/models/{repo}/commit/{rev}          NDJSON commit (header, file, lfsFile, deletedFile, deletedFolder)
    HEAD/GET /{repo}/resolve/{rev}/{path}         downloads, with the ETag, X-Repo-Commit, X-Linked-Etag and
                                                  X-Linked-Size headers hf_hub_download reads
    POST /api/validate-yaml                       README front matter check (a subset of the Hub's rules)

Every repo id is checked with huggingface_hub's own `validate_repo_id` (and must have a namespace) and every
revision against a branch-name / commit-id pattern before it touches the disk or a header, so a request for
`../../x` is refused with 400, never resolved outside ``root``. The server listens on 127.0.0.1 only.
Xet storage is not spoken: clients set HF_HUB_DISABLE_XET=1 (push_stage does so by itself for non-Hub endpoints).
Authentication is not checked: any token, or none, may write.

Storage under ``root``: content-addressed blobs (git SHA-1 for regular files, SHA-256 for LFS objects), one JSON
file per commit holding the full tree, and one refs file per repo replaced atomically. A commit is applied only
after its whole body was received and every LFS object it names is present, so a dropped connection or a failed
commit leaves every branch where it was (the tests' subclass, tests/local_hub.py, makes commits and uploads fail
through the `before_write` hook to check exactly that).

    python -m hcam.hub_cards.local_hub --root DIR [--port 0]   # prints the URL on the first line of stdout
    HF_ENDPOINT=<that URL> HF_HUB_DISABLE_XET=1 python -c "..."  # then push or load as with the Hub
"""
from __future__ import annotations

import argparse
import base64
import datetime as _dt
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from huggingface_hub.utils import HFValidationError, validate_repo_id

from hcam.hub_cards.card import card_metadata_problems

__all__ = ["LocalHubServer", "HubError", "check_repo_id", "check_revision", "main"]

HOST = "127.0.0.1"
USER = "hcam-user"  # the namespace of a repo created without one
# The Hub's default .gitattributes sends these to LFS; so do we, plus anything large or binary.
LFS_SUFFIXES = (
    ".7z", ".arrow", ".bin", ".bz2", ".ckpt", ".ftz", ".gz", ".h5", ".joblib", ".mlmodel", ".model",
    ".msgpack", ".npy", ".npz", ".onnx", ".ot", ".parquet", ".pb", ".pickle", ".pkl", ".pt", ".pth",
    ".rar", ".safetensors", ".tar", ".tflite", ".tgz", ".wasm", ".xz", ".zip", ".zst", ".png", ".jpg",
    ".jpeg", ".wav", ".flac", ".mp3", ".mp4",
)
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
DEFAULT_GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES)
BRANCH_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
COMMIT_RE = re.compile(r"[0-9a-f]{40}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
WRITE_KINDS = ("commit", "lfs_upload")  # what `before_write` is called for
REPO_KINDS = ("models", "datasets")  # the URL word of each repo type: /api/models/..., /api/datasets/...


class HubError(Exception):
    """An error answered as the Hub does: a status, an X-Error-Code header and {"error": message}."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None,
                 extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers, self.extra = headers or {}, extra or {}


class DropConnection(Exception):
    """Raised while answering a request: close the socket without an answer."""


def check_repo_id(repo_id: str) -> str:
    """`namespace/name`, valid by huggingface_hub's rules (no '..', no '--', no '/' in a part), else HubError 400."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise HubError(400, f"Invalid repo id {repo_id!r}: {err}") from None
    if repo_id.count("/") != 1:
        raise HubError(400, f"Invalid repo id {repo_id!r}: the local hub needs namespace/name")
    return repo_id


def check_revision(revision: str) -> str:
    """A branch name, `refs/heads/<branch>` or a full commit id (already URL-unquoted), else HubError 400."""
    name = revision[len("refs/heads/"):] if revision.startswith("refs/heads/") else revision
    if not (BRANCH_RE.fullmatch(name) or COMMIT_RE.fullmatch(name)) or ".." in name:
        raise HubError(400, f"Invalid revision {revision!r}: a branch name or a 40-character commit id")
    return name


def check_path(path: str) -> str:
    """A file path inside a repo: relative, no '.' or '..' part, not under .git/."""
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or parts[0] == ".git":
        raise HubError(400, f"Invalid path in repo: {path!r}")
    return path


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class RepoStore:
    """Repos of one type (``kind`` "models" or "datasets") on disk under ``root/<kind>``; blobs and LFS objects are
    content-addressed and shared by both types. All writes go through one lock; refs are replaced with os.replace."""

    def __init__(self, root: str | os.PathLike, kind: str = "models"):
        if kind not in REPO_KINDS:
            raise ValueError(f"kind must be one of {REPO_KINDS}, got {kind!r}")
        self.root, self.kind = Path(root).resolve(), kind
        for sub in ("blobs", "lfs", kind, "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()

    # ---- storage primitives -------------------------------------------------------------------
    def _atomic_write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def blob_path(self, oid: str) -> Path:
        return self.root / "blobs" / oid[:2] / oid

    def lfs_path(self, oid: str) -> Path:
        if not SHA256_RE.fullmatch(oid):
            raise HubError(400, f"Invalid LFS oid {oid!r}: a sha256 hex digest")
        return self.root / "lfs" / oid[:2] / oid

    def put_blob(self, data: bytes) -> str:
        oid = git_blob_sha1(data)
        if not self.blob_path(oid).exists():
            self._atomic_write(self.blob_path(oid), data)
        return oid

    def has_lfs(self, oid: str, size: int | None = None) -> bool:
        path = self.lfs_path(oid)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def store_lfs(self, oid: str, size: int | None, stream, length: int) -> None:
        """Stream an upload into a temp file, check its SHA-256 and size, then publish it."""
        path = self.lfs_path(oid)
        digest, received = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                while received < length:
                    chunk = stream.read(min(1 << 20, length - received))
                    if not chunk:
                        raise HubError(400, f"Upload of {oid} ended after {received} of {length} bytes")
                    digest.update(chunk)
                    f.write(chunk)
                    received += len(chunk)
            if digest.hexdigest() != oid:
                raise HubError(400, f"Uploaded content does not match oid {oid} (got {digest.hexdigest()})")
            if size is not None and received != size:
                raise HubError(400, f"Uploaded {received} bytes for {oid}, expected {size}")
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    # ---- repos and refs ------------------------------------------------------------------------
    def repo_dir(self, repo_id: str) -> Path:
        path = (self.root / self.kind / check_repo_id(repo_id)).resolve()
        if path.parent.parent != self.root / self.kind:  # belt and braces: never outside root/<kind>/<ns>/
            raise HubError(400, f"Invalid repo id {repo_id!r}")
        return path

    def exists(self, repo_id: str) -> bool:
        return (self.repo_dir(repo_id) / "refs.json").is_file()

    def refs(self, repo_id: str) -> dict:
        if not self.exists(repo_id):
            raise HubError(404, f"Repository Not Found for {self.kind[:-1]} {repo_id}.", "RepoNotFound")
        return json.loads((self.repo_dir(repo_id) / "refs.json").read_text())

    def _write_refs(self, repo_id: str, refs: dict) -> None:
        self._atomic_write(self.repo_dir(repo_id) / "refs.json", json.dumps(refs, indent=1).encode())

    def commit(self, repo_id: str, oid: str) -> dict:
        return json.loads((self.repo_dir(repo_id) / "commits" / f"{oid}.json").read_text())

    def resolve(self, repo_id: str, revision: str) -> str:
        """Branch or full commit id -> commit id."""
        refs, name = self.refs(repo_id), check_revision(revision)
        if name in refs["branches"]:
            return refs["branches"][name]
        if COMMIT_RE.fullmatch(name) and (self.repo_dir(repo_id) / "commits" / f"{name}.json").is_file():
            return name
        raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")

    def tree(self, repo_id: str, revision: str) -> tuple[str, dict]:
        oid = self.resolve(repo_id, revision)
        return oid, self.commit(repo_id, oid)["tree"]

    def _write_commit(self, repo_id: str, parents: list, title: str, message: str, tree: dict) -> str:
        record = {"parents": parents, "title": title, "message": message, "date": _now(), "tree": tree}
        oid = hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()
        record["id"] = oid
        self._atomic_write(self.repo_dir(repo_id) / "commits" / f"{oid}.json", json.dumps(record).encode())
        return oid

    def create_repo(self, repo_id: str, private: bool) -> bool:
        """False if it already existed. A new repo starts like on the Hub: one commit holding .gitattributes."""
        with self.lock:
            if self.exists(repo_id):
                return False
            blob = self.put_blob(DEFAULT_GITATTRIBUTES.encode())
            tree = {".gitattributes": {"oid": blob, "size": len(DEFAULT_GITATTRIBUTES)}}
            oid = self._write_commit(repo_id, [], "initial commit", "", tree)
            meta = {"private": bool(private), "createdAt": _now()}
            self._atomic_write(self.repo_dir(repo_id) / "meta.json", json.dumps(meta).encode())
            self._write_refs(repo_id, {"branches": {"main": oid}})
            return True

    def meta(self, repo_id: str) -> dict:
        return json.loads((self.repo_dir(repo_id) / "meta.json").read_text())

    def create_branch(self, repo_id: str, branch: str, start: str) -> None:
        with self.lock:
            refs = self.refs(repo_id)
            if branch in refs["branches"]:
                raise HubError(409, f"Branch {branch} already exists")
            refs["branches"][branch] = self.resolve(repo_id, start)
            self._write_refs(repo_id, refs)

    def apply_commit(self, repo_id: str, revision: str, header: dict, ops: list[dict]) -> str:
        """Validate every operation first, then write the commit and move the branch: all or nothing."""
        with self.lock:
            refs, branch = self.refs(repo_id), check_revision(revision)
            if branch not in refs["branches"]:
                raise HubError(404, f"Invalid rev id: {branch} (commits go to an existing branch)", "RevisionNotFound")
            head = refs["branches"][branch]
            parent = header.get("parentCommit")
            if parent is not None and parent != head:
                raise HubError(412, f"A commit has happened since. Please refresh and try again. ({parent} != {head})")
            tree = dict(self.commit(repo_id, head)["tree"])
            pending_blobs = [self._apply_operation(tree, op) for op in ops]
            for data in pending_blobs:
                if data is not None:
                    self.put_blob(data)
            oid = self._write_commit(repo_id, [head], header["summary"], header.get("description", ""), tree)
            refs["branches"][branch] = oid
            self._write_refs(repo_id, refs)
            return oid

    def _apply_operation(self, tree: dict, op: dict) -> bytes | None:
        """Apply one NDJSON operation to `tree` in memory; returns a regular file's bytes to store, if any."""
        key, value = op.get("key"), op.get("value") or {}
        if key not in ("file", "lfsFile", "deletedFile", "deletedFolder"):
            raise HubError(400, f"Unknown commit operation {key!r}")
        path = check_path(value.get("path", ""))
        if key == "file":
            if value.get("encoding", "base64") != "base64":
                raise HubError(400, f"Unsupported encoding for {path}")
            data = base64.b64decode(value.get("content", ""))
            tree[path] = {"oid": git_blob_sha1(data), "size": len(data)}
            return data
        if key == "lfsFile":
            oid, size = value.get("oid"), value.get("size")
            if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str) or not SHA256_RE.fullmatch(oid):
                raise HubError(400, f"Bad lfsFile entry for {path}")
            if size is None and self.has_lfs(oid):
                size = self.lfs_path(oid).stat().st_size
            if not self.has_lfs(oid, size):
                raise HubError(400, f"LFS object {oid} for {path} was not uploaded (or has another size)")
            pointer = lfs_pointer(oid, size)
            tree[path] = {"oid": git_blob_sha1(pointer), "size": size,
                          "lfs": {"oid": oid, "size": size, "pointerSize": len(pointer)}}
            return None
        doomed = [path] if key == "deletedFile" else [p for p in tree if p.startswith(path.rstrip("/") + "/")]
        if not doomed or doomed[0] not in tree:
            raise HubError(404, f"Nothing to delete at {path}", "EntryNotFound")
        for p in doomed:
            del tree[p]
        return None


def _header_value(value) -> str:
    """Printable ASCII only: nothing a client sent can end a header line or start another."""
    return re.sub(r"[^\x20-\x7e]", "?", str(value))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    # ---- plumbing --------------------------------------------------------------------------------
    def log_message(self, fmt, *args):  # quiet unless asked
        if self.server.verbose:
            sys.stderr.write("local-hub: " + fmt % args + "\n")

    def _dispatch(self, method: str) -> None:
        self.method = method
        try:
            self._route(method)
        except DropConnection:
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
        except HubError as err:
            headers = dict(err.headers, **{"X-Error-Message": err.message})
            if err.code:
                headers["X-Error-Code"] = err.code
            self._json({"error": err.message, **err.extra}, status=err.status, headers=headers)
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True
        except Exception as err:  # a server bug must still answer, and say what happened
            self._json({"error": f"local hub internal error: {type(err).__name__}: {err}"}, status=500)

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self._read_exact(size))
                self.rfile.readline()
        return self._read_exact(int(self.headers.get("Content-Length") or 0))

    def _read_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.rfile.read(n - len(data))
            if not chunk:
                raise ConnectionError(f"client closed the connection after {len(data)} of {n} bytes")
            data += chunk
        return data

    def _json_body(self):
        try:
            return json.loads(self._body() or b"{}")
        except json.JSONDecodeError as err:
            raise HubError(400, f"Body is not JSON: {err}") from None

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, _header_value(value))
        self.end_headers()
        if self.method != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json; charset=utf-8", headers)

    def _maybe_fail(self, kind: str) -> None:
        self.server.before_write(kind)

    # ---- routing ---------------------------------------------------------------------------------
    def _route(self, method: str) -> None:
        split = urlsplit(self.path)
        self.query = parse_qs(split.query)
        # Each part is unquoted after the split: "%2F" or "%2E%2E" end up inside one part and fail validation.
        parts = [unquote(p) for p in split.path.strip("/").split("/")] if split.path.strip("/") else []
        route = (method, *parts[:1])
        self.store = self.server.stores["models"]  # LFS objects are shared: upload/verify use either store
        if parts[:1] == ["api"] and len(parts) >= 4 and parts[1] in REPO_KINDS:
            self.store = self.server.stores[parts[1]]
            if len(parts) >= 5:
                return self._repo_api(method, f"{parts[2]}/{parts[3]}", parts[4], parts[5:])
            if method == "GET":
                return self._json(self._repo_info(f"{parts[2]}/{parts[3]}", "main"))
        if parts[:1] == ["datasets"] and len(parts) >= 4:  # /datasets/<ns>/<name>.git/... and /datasets/.../resolve
            self.store, parts = self.server.stores["datasets"], parts[1:]
        if route == ("POST", "api") and parts[1:] == ["repos", "create"]:
            return self._create_repo(self._json_body())
        if route == ("POST", "api") and parts[1:] == ["validate-yaml"]:
            errors = card_metadata_problems(self._json_body().get("content", ""))
            return self._json({"errors": [{"message": e} for e in errors]} if errors else {"warnings": []},
                              status=400 if errors else 200)
        if route == ("PUT", "lfs") and len(parts) == 3 and parts[1] == "upload":
            return self._lfs_upload(parts[2])
        if route == ("POST", "lfs") and parts[1:] == ["verify"]:
            body = self._json_body()
            if not self.store.has_lfs(str(body.get("oid", "")), body.get("size")):
                raise HubError(404, f"LFS object {body.get('oid')} not found")
            return self._json({"success": True})
        if method == "POST" and len(parts) == 6 and parts[1].endswith(".git") and parts[2:] == ["info", "lfs",
                                                                                               "objects", "batch"]:
            return self._lfs_batch(f"{parts[0]}/{parts[1][:-4]}")
        if method in ("GET", "HEAD") and len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        raise HubError(404, f"Endpoint not served by the local hub: {method} {split.path}")

    def _repo_api(self, method: str, repo_id: str, action: str, args: list[str]) -> None:
        store = self.store
        if (method, action) == ("GET", "revision") and args:
            return self._json(self._repo_info(repo_id, "/".join(args)))
        if (method, action) == ("GET", "refs"):
            branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": c}
                        for n, c in sorted(store.refs(repo_id)["branches"].items())]
            return self._json({"branches": branches, "tags": [], "converts": [], "pullRequests": []})
        if (method, action) == ("POST", "branch") and args:
            branch = check_revision("/".join(args))
            if COMMIT_RE.fullmatch(branch):
                raise HubError(400, f"Invalid reference for a branch: {branch}")
            store.create_branch(repo_id, branch, self._json_body().get("startingPoint") or "main")
            return self._json({})
        if (method, action) == ("GET", "tree") and args:
            _, tree = store.tree(repo_id, args[0])
            recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
            return self._json(self._list_tree(tree, "/".join(args[1:]), recursive))
        if (method, action) == ("POST", "preupload") and args:
            return self._preupload(repo_id, "/".join(args))
        if (method, action) == ("POST", "commit") and args:
            return self._commit(repo_id, "/".join(args))
        raise HubError(404, f"Endpoint not served by the local hub: {method} /api/{self.store.kind}/{repo_id}/{action}")

    # ---- endpoints -------------------------------------------------------------------------------
    def _create_repo(self, body: dict) -> None:
        kind = f"{body.get('type') or 'model'}s"
        if kind not in REPO_KINDS:
            raise HubError(400, "The local hub serves model and dataset repos only")
        self.store = self.server.stores[kind]
        repo_id = check_repo_id(f"{body.get('organization') or USER}/{body.get('name')}")
        url = f"{self.server.url}/{'datasets/' if kind == 'datasets' else ''}{repo_id}"
        private = body.get("visibility") == "private" or bool(body.get("private"))
        if not self.store.create_repo(repo_id, private):
            # The Hub answers 409 with the repo's url; create_repo(exist_ok=True) reads it.
            raise HubError(409, f"You already created this {kind[:-1]} repo: {repo_id}", extra={"url": url})
        self._json({"url": url, "name": repo_id, "id": repo_id})

    def _repo_info(self, repo_id: str, revision: str) -> dict:
        store = self.store
        oid, tree = store.tree(repo_id, revision)
        siblings = []
        for path, entry in sorted(tree.items()):
            sibling = {"rfilename": path, "size": entry["size"], "blobId": entry["oid"]}
            if "lfs" in entry:
                sibling["lfs"] = {"size": entry["size"], "sha256": entry["lfs"]["oid"],
                                  "pointerSize": entry["lfs"]["pointerSize"]}
            siblings.append(sibling)
        meta = store.meta(repo_id)
        return {"_id": hashlib.md5(repo_id.encode()).hexdigest()[:24], "id": repo_id, "author": repo_id.split("/")[0],
                "sha": oid, "lastModified": store.commit(repo_id, oid)["date"], "createdAt": meta["createdAt"],
                "private": meta["private"], "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [],
                "siblings": siblings}

    @staticmethod
    def _file_entry(path: str, entry: dict) -> dict:
        out = {"type": "file", "path": path, "size": entry["size"], "oid": entry["oid"]}
        if "lfs" in entry:
            out["lfs"] = dict(entry["lfs"])
        return out

    def _list_tree(self, tree: dict, prefix: str, recursive: bool) -> list[dict]:
        prefix = prefix.strip("/")
        if prefix and not any(p.startswith(prefix + "/") for p in tree):
            raise HubError(404, f"{prefix} does not exist on this revision", "EntryNotFound")
        start = prefix + "/" if prefix else ""
        files, folders = [], set()
        for path in sorted(p for p in tree if p.startswith(start)):
            rel = path[len(start):].split("/")
            folders.update(start + "/".join(rel[:depth]) for depth in range(1, len(rel)) if recursive or depth == 1)
            if recursive or len(rel) == 1:
                files.append(self._file_entry(path, tree[path]))
        return [{"type": "directory", "path": folder,
                 "oid": hashlib.sha1("".join(sorted(p + tree[p]["oid"] for p in tree
                                                    if p.startswith(folder + "/"))).encode()).hexdigest()}
                for folder in sorted(folders)] + files

    def _preupload(self, repo_id: str, revision: str) -> None:
        head, tree = self.store.tree(repo_id, revision)
        files = []
        for entry in self._json_body().get("files", []):
            path, size = check_path(entry["path"]), int(entry.get("size", 0))
            sample = base64.b64decode(entry.get("sample", ""))
            lfs = path.lower().endswith(LFS_SUFFIXES) or size >= LFS_SIZE_THRESHOLD or b"\0" in sample
            existing = tree.get(path)
            remote_oid = None if existing is None else existing["lfs"]["oid"] if "lfs" in existing else existing["oid"]
            files.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": remote_oid})
        self._json({"files": files, "commitOid": head})

    def _lfs_batch(self, repo_id: str) -> None:
        self.store.refs(repo_id)  # 404 for a missing repo
        body = self._json_body()
        if body.get("operation") != "upload" or "basic" not in (body.get("transfers") or ["basic"]):
            raise HubError(400, "The local hub serves 'basic' LFS uploads only through the batch API")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj.get("oid"), obj.get("size")
            if not (isinstance(oid, str) and SHA256_RE.fullmatch(oid) and isinstance(size, int)):
                objects.append({"oid": str(oid), "size": 0,
                                "error": {"code": 422, "message": "oid must be a sha256 hex digest and size an int"}})
            elif self.store.has_lfs(oid, size):
                objects.append({"oid": oid, "size": size})  # no actions: already stored
            else:
                objects.append({"oid": oid, "size": size, "authenticated": True, "actions": {
                    "upload": {"href": f"{self.server.url}/lfs/upload/{oid}?size={size}", "expires_in": 3600},
                    "verify": {"href": f"{self.server.url}/lfs/verify", "expires_in": 3600}}})
        self._send(200, json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode(),
                   "application/vnd.git-lfs+json")

    def _lfs_upload(self, oid: str) -> None:
        self._maybe_fail("lfs_upload")
        size = self.query.get("size", [None])[0]
        size = int(size) if size and size.isdigit() else None
        store = self.store
        if self.headers.get("Content-Length") is None:  # chunked
            data = self._body()
            store.store_lfs(oid, size, io.BytesIO(data), len(data))
        else:
            store.store_lfs(oid, size, self.rfile, int(self.headers["Content-Length"]))
        self._send(200, b"", "text/plain", {"ETag": f'"{oid}"'})

    def _commit(self, repo_id: str, revision: str) -> None:
        self.store.refs(repo_id)  # 404 for a missing repo
        # The whole body is read before anything is decided: a connection cut mid-commit changes nothing.
        raw = self._body()
        self._maybe_fail("commit")
        if self.query.get("create_pr", ["0"])[0] in ("1", "true"):
            raise HubError(400, "The local hub does not support pull requests (create_pr)")
        try:
            items = [json.loads(line) for line in raw.split(b"\n") if line.strip()]
        except json.JSONDecodeError as err:
            raise HubError(400, f"Commit body is not NDJSON: {err}") from None
        if not items or items[0].get("key") != "header" or not (items[0].get("value") or {}).get("summary"):
            raise HubError(400, "Commit body must start with a header line with a summary")
        oid = self.store.apply_commit(repo_id, revision, items[0]["value"], items[1:])
        self._json({"success": True, "commitOid": oid, "commitUrl": f"{self.server.url}/{repo_id}/commit/{oid}",
                    "pullRequestUrl": None})

    def _resolve(self, repo_id: str, revision: str, path: str) -> None:
        store = self.store
        oid, tree = store.tree(repo_id, revision)
        entry = tree.get(check_path(path))
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", headers={"X-Repo-Commit": oid})
        headers = {"X-Repo-Commit": oid, "ETag": f'"{entry["oid"]}"',
                   "Content-Disposition": f'inline; filename="{quote(os.path.basename(path))}";'}
        if "lfs" in entry:
            file_path = store.lfs_path(entry["lfs"]["oid"])
            headers.update({"X-Linked-Etag": f'"{entry["lfs"]["oid"]}"', "X-Linked-Size": str(entry["size"])})
        else:
            file_path = store.blob_path(entry["oid"])
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(file_path.stat().st_size))
        for key, value in headers.items():
            self.send_header(key, _header_value(value))
        self.end_headers()
        if self.method == "GET":
            with open(file_path, "rb") as f:
                shutil.copyfileobj(f, self.wfile, 1 << 20)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, stores: dict, port: int, verbose: bool):
        super().__init__((HOST, port), _Handler)
        self.stores, self.verbose = stores, verbose
        self.url = f"http://{HOST}:{self.server_address[1]}"

    def before_write(self, kind: str) -> None:
        """Called before a write (`kind`: one of WRITE_KINDS) is applied; raising HubError or DropConnection refuses
        it with that answer, and nothing is written. Here it does nothing; the tests' server makes writes fail."""


class LocalHubServer:
    """A Hub-protocol server on 127.0.0.1 (never another interface), run in a background thread.

    Args:
        root: folder holding the repos (created if missing); a temporary one when None.
        port: where to listen; 0 picks a free port.
        verbose: log every request to stderr.

    Use as a context manager (``with LocalHubServer(root) as hub: hub.url``) or call start()/stop().
    """

    server_class = _Server

    def __init__(self, root: str | os.PathLike | None = None, *, port: int = 0, verbose: bool = False):
        self._tmp = tempfile.TemporaryDirectory(prefix="hcam-local-hub-") if root is None else None
        self.store = RepoStore(self._tmp.name if root is None else root)
        self.dataset_store = RepoStore(self.store.root, "datasets")
        self.root = self.store.root
        self._server = self.server_class({"models": self.store, "datasets": self.dataset_store}, port, verbose)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> "LocalHubServer":
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, name="local-hub", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "LocalHubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def branch_head(self, repo_id: str, branch: str = "main") -> str:
        return self.store.refs(repo_id)["branches"][branch]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hcam.hub_cards.local_hub",
                                     description="Serve a Hugging Face Hub-protocol server on 127.0.0.1 (where "
                                                 "make demo pushes, and the tests).")
    parser.add_argument("--root", required=True, help="folder where repos are stored")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    hub = LocalHubServer(args.root, port=args.port, verbose=args.verbose).start()
    # The URL is the first line on stdout so a launcher can read it (port 0 = any free port).
    print(hub.url, flush=True)
    print(f"local hub serving {hub.root} (set HF_ENDPOINT={hub.url} HF_HUB_DISABLE_XET=1); Ctrl-C stops it",
          file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()


if __name__ == "__main__":
    main()
