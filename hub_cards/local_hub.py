"""A small Hugging Face Hub-protocol server for tests and the offline demo (stdlib only).

The real Hub is unreachable on CI machines, so pushes and `from_pretrained(..., revision=...)` are
exercised against this server on 127.0.0.1. It speaks the HTTP endpoints that huggingface_hub 2.4
calls for the work hcam does, and nothing more:

    GET  /api/whoami-v2
    POST /api/repos/create                        POST /api/repos/delete
    GET  /api/{type}s/{repo}[/revision/{rev}]     repo_info / model_info (siblings, sha, cardData)
    GET  /api/{type}s/{repo}/refs                 list_repo_refs
    POST /api/{type}s/{repo}/branch/{branch}      create_branch (startingPoint)    DELETE: delete_branch
    POST /api/{type}s/{repo}/tag/{rev}            create_tag                        DELETE .../tag/{tag}
    GET  /api/{type}s/{repo}/commits/{rev}        list_repo_commits
    GET  /api/{type}s/{repo}/tree/{rev}[/{path}]  list_repo_tree (?recursive=)
    POST /api/{type}s/{repo}/paths-info/{rev}     get_paths_info
    POST /api/{type}s/{repo}/preupload/{rev}      upload mode per file: "lfs" or "regular"
    POST /{prefix}{repo}.git/info/lfs/objects/batch   LFS batch API, "basic" transfer only
    PUT  /lfs/upload/{oid}                        the upload href handed out by the batch API
    POST /lfs/verify                              the verify href
    POST /api/{type}s/{repo}/commit/{rev}         NDJSON commit (header, file, lfsFile, deletedFile, deletedFolder)
    HEAD/GET /{prefix}{repo}/resolve/{rev}/{path} downloads, with ETag, X-Repo-Commit, X-Linked-Etag,
                                                  X-Linked-Size and Content-Length as hf_hub_download expects
    POST /api/validate-yaml                       YAML front matter check (a subset of the Hub's rules)

Xet storage is not spoken: clients must set HF_HUB_DISABLE_XET=1 (hcam.hub_cards.push_stage does
this by itself for non-Hub endpoints). Authentication is not checked: any token, or none, may write.

Storage is on disk under ``root``: content-addressed blobs (git SHA-1 for regular files, SHA-256 for
LFS objects), one JSON file per commit holding the full tree, and one refs file per repo that is
replaced atomically. A commit is applied only after its whole body was received and every LFS
object it names is present, so a dropped connection or a failed commit leaves every branch where
it was.

Test hook (not part of the Hub protocol): ``server.fail_next(kind, times=1, mode="500"|"drop")``
makes the next request of one kind ("commit", "lfs_upload", "preupload", "resolve") fail with an
HTTP 500 or a connection closed without any response.
"""
from __future__ import annotations

import argparse
import base64
import datetime as _dt
import hashlib
import json
import os
import re
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = ["LocalHubServer", "main"]

REPO_TYPES = ("model", "dataset", "space")
# URL prefix of each repo type outside /api (the Hub serves models at the root).
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
# The Hub's default .gitattributes sends these to LFS; so do we, plus anything large or binary.
LFS_SUFFIXES = (
    ".7z", ".arrow", ".bin", ".bz2", ".ckpt", ".ftz", ".gz", ".h5", ".joblib", ".mlmodel", ".model",
    ".msgpack", ".npy", ".npz", ".onnx", ".ot", ".parquet", ".pb", ".pickle", ".pkl", ".pt", ".pth",
    ".rar", ".safetensors", ".tar", ".tflite", ".tgz", ".wasm", ".xz", ".zip", ".zst", ".png", ".jpg",
    ".jpeg", ".wav", ".flac", ".mp3", ".mp4",
)
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
DEFAULT_GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class HubError(Exception):
    """An error answered as the Hub does: a status, an X-Error-Code header and {"error": message}."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None,
                 extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}
        self.extra = extra or {}


class _DropConnection(Exception):
    """Test hook: close the socket without answering."""


class RepoStore:
    """Repos on disk. All writes go through one lock; refs are replaced with os.replace."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        for sub in ("blobs", "lfs", "repos", "tmp"):
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

    def put_blob(self, data: bytes) -> str:
        oid = git_blob_sha1(data)
        path = self.root / "blobs" / oid[:2] / oid
        if not path.exists():
            self._atomic_write(path, data)
        return oid

    def blob_path(self, oid: str) -> Path:
        return self.root / "blobs" / oid[:2] / oid

    def lfs_path(self, oid: str) -> Path:
        return self.root / "lfs" / oid[:2] / oid

    def has_lfs(self, oid: str, size: int | None = None) -> bool:
        path = self.lfs_path(oid)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def store_lfs(self, oid: str, size: int | None, stream, length: int) -> None:
        """Stream an upload into a temp file, check its SHA-256 and size, then publish it."""
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
            path = self.lfs_path(oid)
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    # ---- repos -----------------------------------------------------------------------------------
    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        return self.root / "repos" / f"{repo_type}s" / repo_id

    def exists(self, repo_type: str, repo_id: str) -> bool:
        return (self.repo_dir(repo_type, repo_id) / "refs.json").is_file()

    def require(self, repo_type: str, repo_id: str) -> Path:
        if not self.exists(repo_type, repo_id):
            raise HubError(404, f"Repository Not Found for {repo_type} {repo_id}.", "RepoNotFound")
        return self.repo_dir(repo_type, repo_id)

    def refs(self, repo_type: str, repo_id: str) -> dict:
        return json.loads((self.require(repo_type, repo_id) / "refs.json").read_text())

    def _write_refs(self, repo_type: str, repo_id: str, refs: dict) -> None:
        self._atomic_write(self.repo_dir(repo_type, repo_id) / "refs.json", json.dumps(refs, indent=1).encode())

    def commit(self, repo_type: str, repo_id: str, oid: str) -> dict:
        path = self.repo_dir(repo_type, repo_id) / "commits" / f"{oid}.json"
        if not path.is_file():
            raise HubError(404, f"Invalid rev id: {oid}", "RevisionNotFound")
        return json.loads(path.read_text())

    def resolve(self, repo_type: str, repo_id: str, revision: str) -> str:
        """Branch, tag or full commit id -> commit id."""
        refs = self.refs(repo_type, repo_id)
        revision = unquote(revision)
        for prefix, table in (("refs/heads/", "branches"), ("refs/tags/", "tags")):
            if revision.startswith(prefix):
                revision = revision[len(prefix):]
                if revision in refs[table]:
                    return refs[table][revision]
        if revision in refs["branches"]:
            return refs["branches"][revision]
        if revision in refs["tags"]:
            return refs["tags"][revision]
        if COMMIT_RE.match(revision) and (self.repo_dir(repo_type, repo_id) / "commits" / f"{revision}.json").is_file():
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _write_commit(self, repo_type: str, repo_id: str, parents: list, title: str, message: str, tree: dict) -> str:
        record = {"parents": parents, "title": title, "message": message, "date": _now(), "tree": tree}
        oid = hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()
        record["id"] = oid
        self._atomic_write(
            self.repo_dir(repo_type, repo_id) / "commits" / f"{oid}.json", json.dumps(record, sort_keys=True).encode()
        )
        return oid

    def create_repo(self, repo_type: str, repo_id: str, private: bool) -> bool:
        """Returns False if it already existed. A new repo starts like on the Hub: one commit, .gitattributes."""
        with self.lock:
            if self.exists(repo_type, repo_id):
                return False
            blob = self.put_blob(DEFAULT_GITATTRIBUTES.encode())
            tree = {".gitattributes": {"oid": blob, "size": len(DEFAULT_GITATTRIBUTES)}}
            oid = self._write_commit(repo_type, repo_id, [], "initial commit", "", tree)
            meta = {"private": bool(private), "createdAt": _now()}
            self._atomic_write(self.repo_dir(repo_type, repo_id) / "meta.json", json.dumps(meta).encode())
            self._write_refs(repo_type, repo_id, {"branches": {"main": oid}, "tags": {}})
            return True

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        import shutil

        with self.lock:
            shutil.rmtree(self.require(repo_type, repo_id))

    def meta(self, repo_type: str, repo_id: str) -> dict:
        path = self.repo_dir(repo_type, repo_id) / "meta.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def set_ref(self, repo_type: str, repo_id: str, table: str, name: str, target: str | None, *, create: bool) -> None:
        with self.lock:
            refs = self.refs(repo_type, repo_id)
            if create and name in refs[table]:
                kind = "Branch" if table == "branches" else "Tag"
                raise HubError(409, f"{kind} {name} already exists")
            if target is None:
                if name not in refs[table]:
                    raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
                del refs[table][name]
            else:
                refs[table][name] = target
            self._write_refs(repo_type, repo_id, refs)

    def apply_commit(self, repo_type: str, repo_id: str, branch: str, header: dict, ops: list[dict]) -> str:
        """Validate every operation first, then write the commit and move the branch: all or nothing."""
        with self.lock:
            refs = self.refs(repo_type, repo_id)
            branch = unquote(branch)
            if branch.startswith("refs/heads/"):
                branch = branch[len("refs/heads/"):]
            if branch not in refs["branches"]:
                if branch in refs["tags"] or COMMIT_RE.match(branch):
                    raise HubError(400, f"Cannot commit to {branch}: not a branch")
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            head = refs["branches"][branch]
            parent = header.get("parentCommit")
            if parent is not None and parent != head:
                raise HubError(412, f"A commit has happened since. Please refresh and try again. ({parent} != {head})")
            tree = dict(self.commit(repo_type, repo_id, head)["tree"])
            pending_blobs: list[bytes] = []
            for op in ops:
                key, value = op.get("key"), op.get("value") or {}
                path = value.get("path", "")
                if key in ("file", "lfsFile", "deletedFile", "deletedFolder"):
                    _check_path(path)
                if key == "file":
                    if value.get("encoding", "base64") != "base64":
                        raise HubError(400, f"Unsupported encoding for {path}")
                    data = base64.b64decode(value.get("content", ""))
                    pending_blobs.append(data)
                    tree[path] = {"oid": git_blob_sha1(data), "size": len(data)}
                elif key == "lfsFile":
                    oid, size = value.get("oid"), value.get("size")
                    if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str):
                        raise HubError(400, f"Bad lfsFile entry for {path}")
                    if size is None and self.has_lfs(oid):
                        size = self.lfs_path(oid).stat().st_size
                    if not self.has_lfs(oid, size):
                        raise HubError(400, f"LFS object {oid} for {path} was not uploaded (or has another size)")
                    tree[path] = {
                        "oid": git_blob_sha1(lfs_pointer(oid, size)),
                        "size": size,
                        "lfs": {"oid": oid, "size": size, "pointerSize": len(lfs_pointer(oid, size))},
                    }
                elif key == "deletedFile":
                    if path not in tree:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del tree[path]
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    doomed = [p for p in tree if p.startswith(prefix)]
                    if not doomed:
                        raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for p in doomed:
                        del tree[p]
                else:
                    raise HubError(400, f"Unknown commit operation {key!r}")
            for data in pending_blobs:
                self.put_blob(data)
            oid = self._write_commit(
                repo_type, repo_id, [head], header.get("summary", ""), header.get("description", ""), tree
            )
            refs["branches"][branch] = oid
            self._write_refs(repo_type, repo_id, refs)
            return oid

    def history(self, repo_type: str, repo_id: str, oid: str) -> list[dict]:
        out = []
        while oid:
            record = self.commit(repo_type, repo_id, oid)
            out.append(record)
            oid = record["parents"][0] if record["parents"] else None
        return out


def _check_path(path: str) -> None:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or parts[0] == ".git":
        raise HubError(400, f"Invalid path in repo: {path!r}")


def _validate_card_yaml(content: str) -> list[str]:
    """The checks this server makes on README.md metadata (a subset of the Hub's)."""
    import yaml

    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.DOTALL)
    if match is None:
        return []
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as err:
        return [f"YAML front matter does not parse: {err}"]
    if meta is None:
        return []
    if not isinstance(meta, dict):
        return ["YAML front matter must be a mapping"]
    errors = []
    for key in ("tags", "datasets", "base_model", "language"):
        value = meta.get(key)
        if value is not None and not isinstance(value, (str, list)):
            errors.append(f'"{key}" must be a string or a list of strings')
    if "license" in meta and not isinstance(meta["license"], str):
        errors.append('"license" must be a string')
    index = meta.get("model-index")
    if index is not None:
        if not isinstance(index, list):
            return errors + ['"model-index" must be an array']
        for i, model in enumerate(index):
            if not isinstance(model, dict) or not isinstance(model.get("name"), str):
                errors.append(f'"model-index[{i}].name" is required and must be a string')
                continue
            for j, result in enumerate(model.get("results") or []):
                where = f"model-index[{i}].results[{j}]"
                if not isinstance((result.get("task") or {}).get("type"), str):
                    errors.append(f'"{where}.task.type" is required')
                dataset = result.get("dataset") or {}
                if not isinstance(dataset.get("name"), str) or not isinstance(dataset.get("type"), str):
                    errors.append(f'"{where}.dataset" needs "name" and "type"')
                metrics = result.get("metrics")
                if not isinstance(metrics, list) or not metrics:
                    errors.append(f'"{where}.metrics" must be a non-empty array')
                    continue
                for k, metric in enumerate(metrics):
                    if not isinstance(metric, dict) or not isinstance(metric.get("type"), str) or "value" not in metric:
                        errors.append(f'"{where}.metrics[{k}]" needs "type" and "value"')
    return errors


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
        except _DropConnection:
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
        except HubError as err:
            headers = dict(err.headers)
            if err.code:
                headers["X-Error-Code"] = err.code
            headers["X-Error-Message"] = err.message
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

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self._read_exact(size))
                self.rfile.readline()
            return b"".join(chunks)
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
        raw = self._body()
        try:
            return json.loads(raw or b"{}")
        except json.JSONDecodeError as err:
            raise HubError(400, f"Body is not JSON: {err}")

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.end_headers()
        if self.method != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json; charset=utf-8", headers)

    @property
    def base(self) -> str:
        return self.server.url

    def _maybe_fail(self, kind: str) -> None:
        mode = self.server.take_failure(kind)
        if mode == "drop":
            raise _DropConnection()
        if mode == "500":
            raise HubError(500, f"Injected failure of {kind} (local hub test hook)")

    # ---- routing ---------------------------------------------------------------------------------
    def _route(self, method: str) -> None:
        split = urlsplit(self.path)
        self.query = parse_qs(split.query)
        parts = [unquote(p) for p in split.path.strip("/").split("/")] if split.path.strip("/") else []
        store = self.server.store

        if parts[:1] == ["api"]:
            rest = parts[1:]
            if rest == ["whoami-v2"] and method == "GET":
                return self._json(self.server.whoami())
            if rest == ["validate-yaml"] and method == "POST":
                body = self._json_body()
                errors = _validate_card_yaml(body.get("content", ""))
                if errors:
                    return self._json({"errors": [{"message": e} for e in errors]}, status=400)
                return self._json({"warnings": []})
            if rest == ["repos", "create"] and method == "POST":
                return self._create_repo(self._json_body())
            if rest == ["repos", "delete"] and method == "POST":
                body = self._json_body()
                repo_id = f"{body.get('organization')}/{body['name']}" if body.get("organization") else body["name"]
                store.delete_repo(body.get("type") or "model", repo_id)
                return self._json({})
            if len(rest) >= 3 and rest[0].endswith("s") and rest[0][:-1] in REPO_TYPES:
                repo_type, repo_id, tail = rest[0][:-1], f"{rest[1]}/{rest[2]}", rest[3:]
                return self._repo_api(method, repo_type, repo_id, tail)
            raise HubError(404, f"Endpoint not served by the local hub: {method} {split.path}")

        if parts[:2] == ["lfs", "upload"] and len(parts) == 3 and method == "PUT":
            return self._lfs_upload(parts[2])
        if parts == ["lfs", "verify"] and method == "POST":
            body = self._json_body()
            if not store.has_lfs(body.get("oid", ""), body.get("size")):
                raise HubError(404, f"LFS object {body.get('oid')} not found")
            return self._json({"success": True})

        repo_type = "model"
        for candidate, prefix in URL_PREFIX.items():
            if prefix and parts[:1] == [prefix.rstrip("/")]:
                repo_type, parts = candidate, parts[1:]
        if len(parts) >= 2 and parts[1].endswith(".git") and parts[2:] == ["info", "lfs", "objects", "batch"]:
            if method != "POST":
                raise HubError(405, "LFS batch needs POST")
            return self._lfs_batch(repo_type, f"{parts[0]}/{parts[1][:-4]}")
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(repo_type, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        raise HubError(404, f"Endpoint not served by the local hub: {method} {split.path}")

    # ---- endpoints -------------------------------------------------------------------------------
    def _create_repo(self, body: dict) -> None:
        name, org = body.get("name"), body.get("organization")
        repo_type = body.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Invalid repo type {repo_type!r}")
        if not name or not NAME_RE.match(name) or (org and not NAME_RE.match(org)):
            raise HubError(400, f"Invalid repo name {org}/{name}")
        org = org or self.server.user
        repo_id = f"{org}/{name}"
        url = f"{self.base}/{URL_PREFIX[repo_type]}{repo_id}"
        private = body.get("visibility") == "private" or bool(body.get("private"))
        if not self.server.store.create_repo(repo_type, repo_id, private):
            # The Hub answers 409 with the repo's url; create_repo(exist_ok=True) reads it.
            raise HubError(409, f"You already created this {repo_type} repo: {repo_id}", extra={"url": url})
        self._json({"url": url, "name": repo_id, "id": repo_id})

    def _repo_api(self, method: str, repo_type: str, repo_id: str, tail: list[str]) -> None:
        store = self.server.store
        if not tail or (tail[0] == "revision" and len(tail) >= 2):
            if method != "GET":
                raise HubError(405, "repo info needs GET")
            revision = "/".join(tail[1:]) if tail else "main"
            return self._json(self._repo_info(repo_type, repo_id, revision))
        action, args = tail[0], tail[1:]
        if action == "refs" and method == "GET":
            refs = store.refs(repo_type, repo_id)
            fmt = lambda table, prefix: [  # noqa: E731
                {"name": n, "ref": f"{prefix}{n}", "targetCommit": c} for n, c in sorted(refs[table].items())
            ]
            return self._json(
                {"branches": fmt("branches", "refs/heads/"), "tags": fmt("tags", "refs/tags/"), "converts": [],
                 "pullRequests": []}
            )
        if action == "branch" and args:
            branch = "/".join(args)
            if method == "POST":
                if not REF_RE.match(branch):
                    raise HubError(400, f"Invalid reference for a branch: {branch}")
                body = self._json_body()
                start = store.resolve(repo_type, repo_id, body.get("startingPoint") or "main")
                store.set_ref(repo_type, repo_id, "branches", branch, start, create=True)
                return self._json({})
            if method == "DELETE":
                if branch == "main":
                    raise HubError(403, "Cannot delete the main branch")
                store.set_ref(repo_type, repo_id, "branches", branch, None, create=False)
                return self._json({})
        if action == "tag" and args:
            if method == "POST":
                body = self._json_body()
                tag = body.get("tag", "")
                if not REF_RE.match(tag):
                    raise HubError(400, f"Invalid tag name: {tag}")
                target = store.resolve(repo_type, repo_id, "/".join(args))
                store.set_ref(repo_type, repo_id, "tags", tag, target, create=True)
                return self._json({})
            if method == "DELETE":
                store.set_ref(repo_type, repo_id, "tags", "/".join(args), None, create=False)
                return self._json({})
        if action == "commits" and method == "GET":
            oid = store.resolve(repo_type, repo_id, "/".join(args) or "main")
            return self._json(
                [
                    {"id": c["id"], "title": c["title"], "message": c["message"], "date": c["date"],
                     "authors": [{"user": self.server.user}]}
                    for c in store.history(repo_type, repo_id, oid)
                ]
            )
        if action == "tree" and args and method == "GET":
            oid = store.resolve(repo_type, repo_id, args[0])
            prefix = "/".join(args[1:])
            recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
            return self._json(self._tree(store.commit(repo_type, repo_id, oid)["tree"], prefix, recursive))
        if action == "paths-info" and args and method == "POST":
            oid = store.resolve(repo_type, repo_id, "/".join(args))
            raw = self._body().decode()
            if self.headers.get("Content-Type", "").startswith("application/json"):
                paths = json.loads(raw).get("paths", [])
            else:
                paths = parse_qs(raw).get("paths", [])
            tree = store.commit(repo_type, repo_id, oid)["tree"]
            out = []
            for path in paths:
                path = path.strip("/")
                if path in tree:
                    out.append(self._file_entry(path, tree[path]))
                elif any(p.startswith(path + "/") for p in tree):
                    out.append(self._folder_entry(path, tree))
            return self._json(out)
        if action == "preupload" and args and method == "POST":
            self._maybe_fail("preupload")
            body = self._json_body()
            revision = "/".join(args)
            try:
                tree = store.commit(repo_type, repo_id, store.resolve(repo_type, repo_id, revision))["tree"]
            except HubError:
                tree = {}  # a branch that does not exist yet (create_pr) has no files
            files = []
            for entry in body.get("files", []):
                path, size = entry["path"], int(entry.get("size", 0))
                sample = base64.b64decode(entry.get("sample", ""))
                lfs = path.lower().endswith(LFS_SUFFIXES) or size >= LFS_SIZE_THRESHOLD or b"\0" in sample
                existing = tree.get(path)
                remote_oid = None
                if existing is not None:
                    remote_oid = existing["lfs"]["oid"] if "lfs" in existing else existing["oid"]
                files.append(
                    {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": remote_oid}
                )
            return self._json({"files": files, "commitOid": store.resolve(repo_type, repo_id, "main")})
        if action == "commit" and args and method == "POST":
            return self._commit(repo_type, repo_id, "/".join(args))
        raise HubError(404, f"Endpoint not served by the local hub: {method} /api/{repo_type}s/{repo_id}/{'/'.join(tail)}")

    def _repo_info(self, repo_type: str, repo_id: str, revision: str) -> dict:
        store = self.server.store
        oid = store.resolve(repo_type, repo_id, revision)
        commit = store.commit(repo_type, repo_id, oid)
        tree = commit["tree"]
        siblings = []
        for path, entry in sorted(tree.items()):
            sibling = {"rfilename": path, "size": entry["size"], "blobId": entry["oid"]}
            if "lfs" in entry:
                sibling["lfs"] = {"size": entry["size"], "sha256": entry["lfs"]["oid"],
                                  "pointerSize": entry["lfs"]["pointerSize"]}
            siblings.append(sibling)
        info = {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": oid,
            "lastModified": commit["date"],
            "createdAt": store.meta(repo_type, repo_id).get("createdAt", commit["date"]),
            "private": store.meta(repo_type, repo_id).get("private", False),
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }
        card = self._card_data(tree)
        if card is not None:
            info["cardData"] = card
            info["tags"] = list(card.get("tags") or [])
            if card.get("library_name"):
                info["library_name"] = card["library_name"]
            if card.get("pipeline_tag"):
                info["pipeline_tag"] = card["pipeline_tag"]
            if card.get("model-index") is not None:
                info["model-index"] = card["model-index"]
        if "config.json" in tree and "lfs" not in tree["config.json"]:
            try:
                config = json.loads(store.blob_path(tree["config.json"]["oid"]).read_bytes())
                info["config"] = {k: config[k] for k in ("architectures", "model_type", "auto_map") if k in config}
            except (OSError, ValueError):
                pass
        return info

    def _card_data(self, tree: dict):
        entry = tree.get("README.md")
        if entry is None or "lfs" in entry:
            return None
        import yaml

        text = self.server.store.blob_path(entry["oid"]).read_text(encoding="utf-8", errors="replace")
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.DOTALL)
        try:
            data = yaml.safe_load(match.group(1)) if match else None
        except yaml.YAMLError:
            return None
        return data if isinstance(data, dict) else None

    @staticmethod
    def _file_entry(path: str, entry: dict) -> dict:
        out = {"type": "file", "path": path, "size": entry["size"], "oid": entry["oid"]}
        if "lfs" in entry:
            out["lfs"] = dict(entry["lfs"])
        return out

    @staticmethod
    def _folder_entry(path: str, tree: dict) -> dict:
        members = "".join(sorted(p + tree[p]["oid"] for p in tree if p.startswith(path + "/")))
        return {"type": "directory", "path": path, "oid": hashlib.sha1(members.encode()).hexdigest()}

    def _tree(self, tree: dict, prefix: str, recursive: bool) -> list[dict]:
        prefix = prefix.strip("/")
        if prefix and not any(p.startswith(prefix + "/") for p in tree):
            raise HubError(404, f"{prefix} does not exist on this revision", "EntryNotFound")
        start = prefix + "/" if prefix else ""
        files, folders = [], set()
        for path in sorted(tree):
            if not path.startswith(start):
                continue
            rel = path[len(start):].split("/")
            for depth in range(1, len(rel)):
                if recursive or depth == 1:
                    folders.add(start + "/".join(rel[:depth]))
            if recursive or len(rel) == 1:
                files.append(self._file_entry(path, tree[path]))
        return [self._folder_entry(f, tree) for f in sorted(folders)] + files

    def _lfs_batch(self, repo_type: str, repo_id: str) -> None:
        self.server.store.require(repo_type, repo_id)
        body = self._json_body()
        if body.get("operation") != "upload":
            raise HubError(400, "The local hub only serves LFS uploads through the batch API (downloads use /resolve)")
        if "basic" not in (body.get("transfers") or ["basic"]):
            raise HubError(400, "The local hub only supports the 'basic' LFS transfer")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj.get("oid"), obj.get("size")
            if not (isinstance(oid, str) and re.fullmatch(r"[0-9a-f]{64}", oid) and isinstance(size, int)):
                objects.append({"oid": str(oid), "size": int(size or 0),
                                "error": {"code": 422, "message": "oid must be a sha256 hex digest and size an int"}})
            elif self.server.store.has_lfs(oid, size):
                objects.append({"oid": oid, "size": size})  # no actions: already stored
            else:
                objects.append({
                    "oid": oid,
                    "size": size,
                    "authenticated": True,
                    "actions": {
                        "upload": {"href": f"{self.base}/lfs/upload/{oid}?size={size}", "expires_in": 3600},
                        "verify": {"href": f"{self.base}/lfs/verify", "expires_in": 3600},
                    },
                })
        self._send(200, json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode(),
                   "application/vnd.git-lfs+json")

    def _lfs_upload(self, oid: str) -> None:
        self._maybe_fail("lfs_upload")
        size = self.query.get("size", [None])[0]
        length = self.headers.get("Content-Length")
        if length is None:
            data = self._body()  # chunked
            import io

            self.server.store.store_lfs(oid, int(size) if size else None, io.BytesIO(data), len(data))
        else:
            self.server.store.store_lfs(oid, int(size) if size else None, self.rfile, int(length))
        self._send(200, b"", "text/plain", {"ETag": f'"{oid}"'})

    def _commit(self, repo_type: str, repo_id: str, revision: str) -> None:
        store = self.server.store
        store.require(repo_type, repo_id)
        # The whole body is read before anything is decided: a connection cut mid-commit changes nothing.
        raw = self._body()
        self._maybe_fail("commit")
        if self.query.get("create_pr", ["0"])[0] in ("1", "true"):
            raise HubError(400, "The local hub does not support pull requests (create_pr)")
        lines = [line for line in raw.split(b"\n") if line.strip()]
        try:
            items = [json.loads(line) for line in lines]
        except json.JSONDecodeError as err:
            raise HubError(400, f"Commit body is not NDJSON: {err}")
        if not items or items[0].get("key") != "header":
            raise HubError(400, "Commit body must start with a header line")
        header, ops = items[0]["value"], items[1:]
        if not header.get("summary"):
            raise HubError(400, "Commit summary is required")
        oid = store.apply_commit(repo_type, repo_id, revision, header, ops)
        prefix = f"{self.base}/{URL_PREFIX[repo_type]}{repo_id}"
        self._json({"success": True, "commitOid": oid, "commitUrl": f"{prefix}/commit/{oid}", "pullRequestUrl": None})

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        store = self.server.store
        self._maybe_fail("resolve")
        oid = store.resolve(repo_type, repo_id, revision)
        tree = store.commit(repo_type, repo_id, oid)["tree"]
        entry = tree.get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", headers={"X-Repo-Commit": oid})
        headers = {"X-Repo-Commit": oid, "Accept-Ranges": "bytes"}
        if "lfs" in entry:
            file_path = store.lfs_path(entry["lfs"]["oid"])
            headers["ETag"] = f'"{entry["oid"]}"'
            headers["X-Linked-Etag"] = f'"{entry["lfs"]["oid"]}"'
            headers["X-Linked-Size"] = str(entry["size"])
        else:
            file_path = store.blob_path(entry["oid"])
            headers["ETag"] = f'"{entry["oid"]}"'
        self._send_file(file_path, headers, os.path.basename(path))

    def _send_file(self, file_path: Path, headers: dict, filename: str) -> None:
        size = file_path.stat().st_size
        start, end, status = 0, size - 1, 200
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "") or "")
        if match and size:
            if match.group(1):
                start = int(match.group(1))
                end = int(match.group(2)) if match.group(2) else size - 1
            else:
                start = max(0, size - int(match.group(2)))
            end = min(end, size - 1)
            if start > end:
                raise HubError(416, "Requested range not satisfiable")
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1 if size else 0))
        self.send_header("Content-Disposition", f'inline; filename="{quote(filename)}";')
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.method == "HEAD" or not size:
            return
        with open(file_path, "rb") as f:
            f.seek(start)
            remaining = end - start + 1
            while remaining:
                chunk = f.read(min(1 << 20, remaining))
                self.wfile.write(chunk)
                remaining -= len(chunk)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, store: RepoStore, user: str, orgs: list[str], verbose: bool):
        super().__init__(address, _Handler)
        self.store, self.user, self.orgs, self.verbose = store, user, orgs, verbose
        host, port = self.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._failures: dict[str, list[str]] = {}
        self._failures_lock = threading.Lock()

    def whoami(self) -> dict:
        return {
            "type": "user",
            "id": hashlib.md5(self.user.encode()).hexdigest()[:24],
            "name": self.user,
            "fullname": "hcam local hub user",
            "email": None,
            "orgs": [{"type": "org", "name": org, "fullname": org, "roleInOrg": "admin"} for org in self.orgs],
            "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}},
        }

    def take_failure(self, kind: str) -> str | None:
        with self._failures_lock:
            queue = self._failures.get(kind)
            return queue.pop(0) if queue else None


class LocalHubServer:
    """A Hub-protocol server on 127.0.0.1, run in a background thread.

    Args:
        root: folder holding the repos (created if missing); a temporary one when None.
        host, port: where to listen; port 0 picks a free port.
        user: the name /api/whoami-v2 returns; ``orgs`` are the organisations it belongs to.
        verbose: log every request to stderr.

    Use as a context manager (``with LocalHubServer(root) as hub: hub.url``) or call start()/stop().
    """

    def __init__(self, root: str | os.PathLike | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 user: str = "hcam-user", orgs: tuple[str, ...] = ("org",), verbose: bool = False):
        self._tmp = None
        if root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hcam-local-hub-")
            root = self._tmp.name
        self.root = Path(root)
        self.store = RepoStore(self.root)
        self._server = _Server((host, port), self.store, user, list(orgs), verbose)
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

    def fail_next(self, kind: str, times: int = 1, mode: str = "500") -> None:
        """Test hook: the next ``times`` requests of ``kind`` fail ("500": HTTP 500; "drop": no answer)."""
        if kind not in ("commit", "lfs_upload", "preupload", "resolve"):
            raise ValueError(f"unknown failure kind {kind!r}")
        if mode not in ("500", "drop"):
            raise ValueError(f"unknown failure mode {mode!r}")
        with self._server._failures_lock:
            self._server._failures.setdefault(kind, []).extend([mode] * times)

    def branch_head(self, repo_id: str, branch: str = "main", repo_type: str = "model") -> str:
        return self.store.refs(repo_type, repo_id)["branches"][branch]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a local Hugging Face Hub-protocol server (hcam test support).")
    parser.add_argument("--root", required=True, help="folder where repos are stored")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--user", default="hcam-user")
    parser.add_argument("--org", action="append", default=None, help="organisation the user belongs to (repeatable)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    hub = LocalHubServer(args.root, host=args.host, port=args.port, user=args.user,
                         orgs=tuple(args.org or ["org"]), verbose=args.verbose)
    hub.start()
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
