"""A small Hugging Face Hub look-alike for tests: just the endpoints the real `huggingface_hub` and `datasets`
clients use to create a dataset repo, commit files (regular and LFS), tag, list refs and trees, and download.

Start it with `FakeHub(tokens={"hf_...": "alice"}).start()`; `hub.url` is the endpoint (set HF_ENDPOINT to it).
State lives in memory: repos with commits (path -> blob), branches and tags; LFS objects by sha256.
Every request is appended to `hub.requests` as (method, path) so tests can count commits.

Endpoints (repo type is always "datasets" here; {rev} is a branch, a tag or a commit id, URL-quoted):
    POST /api/repos/create                                  create (409 if it exists, 403 outside your namespace)
    GET  /api/datasets/{repo}[/revision/{rev}]              repo info: sha, siblings
    POST /api/validate-yaml                                 README metadata check (always fine)
    POST /api/datasets/{repo}/preupload/{rev}               upload mode per file (lfs for .parquet)
    POST /datasets/{repo}.git/info/lfs/objects/batch        LFS batch: where to PUT each object
    PUT  /lfs/{oid}   POST /lfs/verify                      LFS object upload and verification
    POST /api/datasets/{repo}/commit/{rev}                  ndjson commit (header, file, lfsFile, deletedFile)
    POST /api/datasets/{repo}/tag/{rev}                     create a tag
    POST /api/datasets/{repo}/branch/{branch}               create a branch
    GET  /api/datasets/{repo}/refs                          branches and tags
    GET  /api/datasets/{repo}/commits/{rev}                 history (newest first)
    GET  /api/datasets/{repo}/tree/{rev}[/{path}]           files and folders (?recursive=1)
    POST /api/datasets/{repo}/paths-info/{rev}              entries for given paths
    GET|HEAD /datasets/{repo}/resolve/{rev}/{path}          file bytes, with Range support
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".parquet", ".arrow", ".bin", ".safetensors")
LFS_MIN_SIZE = 10 * 1024 * 1024


def git_blob_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass(frozen=True)
class Blob:
    content: bytes
    lfs_sha256: str | None = None  # set for LFS files

    @property
    def oid(self) -> str:
        return git_blob_oid(self.pointer if self.lfs_sha256 else self.content)

    @property
    def pointer(self) -> bytes:
        return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.lfs_sha256}\n"
                f"size {len(self.content)}\n").encode()

    @property
    def etag(self) -> str:
        return self.lfs_sha256 or self.oid


@dataclass
class Commit:
    oid: str
    files: dict[str, Blob]
    title: str
    parent: str | None
    date: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, rev: str) -> Commit | None:
        oid = self.branches.get(rev) or self.tags.get(rev)
        if oid is None and re.fullmatch(r"[0-9a-f]{7,40}", rev):
            matches = [c for c in self.commits if c.startswith(rev)]
            oid = matches[0] if len(matches) == 1 else None
        return self.commits.get(oid) if oid else None

    def add_commit(self, files: dict[str, Blob], title: str, parent: str | None) -> Commit:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        digest = hashlib.sha1(json.dumps([parent, title, now, len(self.commits),
                                          sorted((p, b.oid) for p, b in files.items())]).encode()).hexdigest()
        commit = Commit(digest, files, title, parent, now)
        self.commits[digest] = commit
        return commit


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class FakeHub:
    def __init__(self, tokens: dict[str, str] | None = None, host: str = "127.0.0.1", port: int = 0):
        self.tokens = dict(tokens or {})
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.unhandled: list[tuple[str, str]] = []
        self.lock = threading.RLock()
        self.server = ThreadingHTTPServer((host, port), _make_handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers for tests

    def create_repo(self, repo_id: str, private: bool = False) -> Repo:
        with self.lock:
            repo = Repo(repo_id, private)
            first = repo.add_commit({".gitattributes": Blob(b"*.parquet filter=lfs diff=lfs merge=lfs -text\n")},
                                    "initial commit", None)
            repo.branches["main"] = first.oid
            self.repos[repo_id] = repo
            return repo

    def commit_count(self, repo_id: str) -> int:
        return len(self.repos[repo_id].commits)

    # ------------------------------------------------------------------ request handling

    def user_for(self, authorization: str | None) -> str | None:
        if not authorization:
            return None
        token = authorization.removeprefix("Bearer ").strip()
        if token not in self.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.tokens[token]

    def repo_for_read(self, repo_id: str, user: str | None) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and user != repo_id.split("/")[0]):
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def repo_for_write(self, repo_id: str, user: str | None) -> Repo:
        repo = self.repo_for_read(repo_id, user)
        if user is None:
            raise HubError(401, "You must be authenticated to write")
        if user != repo_id.split("/")[0]:
            raise HubError(403, f"You don't have write access to {repo_id}")
        return repo

    @staticmethod
    def commit_at(repo: Repo, rev: str) -> Commit:
        commit = repo.resolve(rev)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return commit


def _entries(commit: Commit, prefix: str, recursive: bool) -> list[dict]:
    prefix = prefix.strip("/")
    base = prefix + "/" if prefix else ""
    files, folders = [], set()
    for path in sorted(commit.files):
        if not path.startswith(base):
            continue
        rest = path[len(base):]
        if "/" in rest:
            parts = rest.split("/")
            for depth in range(1, len(parts) if recursive else 2):
                folders.add(base + "/".join(parts[:depth]))
            if not recursive:
                continue
        files.append(_file_entry(path, commit.files[path]))
    folder_entries = [{"type": "directory", "path": p, "oid": hashlib.sha1(p.encode()).hexdigest()}
                      for p in sorted(folders)]
    return folder_entries + files


def _file_entry(path: str, blob: Blob) -> dict:
    entry = {"type": "file", "path": path, "size": len(blob.content), "oid": blob.oid}
    if blob.lfs_sha256:
        entry["lfs"] = {"oid": blob.lfs_sha256, "size": len(blob.content), "pointerSize": len(blob.pointer)}
    return entry


def _make_handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        # -------------------------------------------------------------- plumbing

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, payload: bytes = b"", headers: dict | None = None,
                  content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def _json(self, payload, status: int = 200, headers: dict | None = None) -> None:
            self._send(status, json.dumps(payload).encode(), headers)

        def _error(self, error: HubError) -> None:
            headers = {"X-Error-Message": error.message}
            if error.code:
                headers["X-Error-Code"] = error.code
            if self.command == "HEAD":  # a HEAD answer carries no body
                self.send_response(error.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._json({"error": error.message}, error.status, headers)

        def _dispatch(self) -> None:
            parts = urlsplit(self.path)
            path, query = unquote(parts.path), parse_qs(parts.query)
            body = self._body() if self.command in ("POST", "PUT") else b""
            with hub.lock:
                hub.requests.append((self.command, parts.path))
            try:
                user = hub.user_for(self.headers.get("Authorization"))
                for method, pattern, handler in ROUTES:
                    match = re.fullmatch(pattern, path) if method == self.command or (
                        method == "GET" and self.command == "HEAD") else None
                    if match:
                        with hub.lock:
                            handler(self, user, query, body, **match.groupdict())
                        return
                if parts.path != "/api/agent-harnesses":  # best-effort client telemetry: a 404 is fine
                    hub.unhandled.append((self.command, self.path))
                raise HubError(404, f"fake hub: no route for {self.command} {parts.path}")
            except HubError as error:
                self._error(error)

        do_GET = do_HEAD = do_POST = do_PUT = _dispatch

        # -------------------------------------------------------------- endpoints

        def create_repo(self, user, query, body):
            payload = json.loads(body or b"{}")
            if user is None:
                raise HubError(401, "You must be authenticated to create a repo")
            namespace = payload.get("organization") or user
            if namespace != user:
                raise HubError(403, f"You don't have the rights to create a dataset under the namespace {namespace}")
            repo_id = f"{namespace}/{payload['name']}"
            if repo_id in hub.repos:  # the Hub names the repo in its 409 answer too
                self._json({"error": "You already created this dataset repo", "url": f"{hub.url}/datasets/{repo_id}"},
                           409, {"X-Error-Message": "You already created this dataset repo"})
                return
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            hub.create_repo(repo_id, private=private)
            self._json({"url": f"{hub.url}/datasets/{repo_id}", "name": repo_id})

        def repo_info(self, user, query, body, repo, rev=None):
            info = hub.repo_for_read(repo, user)
            commit = hub.commit_at(info, rev or "main")
            siblings = [{"rfilename": p, "size": len(b.content), "blobId": b.oid,
                         **({"lfs": {"sha256": b.lfs_sha256, "size": len(b.content), "pointerSize": len(b.pointer)}}
                            if b.lfs_sha256 else {})} for p, b in sorted(commit.files.items())]
            self._json({"_id": hashlib.sha1(repo.encode()).hexdigest()[:24], "id": repo,
                        "author": repo.split("/")[0], "sha": commit.oid, "private": info.private,
                        "lastModified": commit.date, "createdAt": commit.date, "disabled": False,
                        "gated": False, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings})

        def validate_yaml(self, user, query, body):
            self._json({"errors": [], "warnings": []})

        def preupload(self, user, query, body, repo, rev):
            commit = hub.commit_at(hub.repo_for_write(repo, user), rev)
            files = []
            for item in json.loads(body)["files"]:
                lfs = item["path"].endswith(LFS_SUFFIXES) or item["size"] >= LFS_MIN_SIZE
                existing = commit.files.get(item["path"])
                files.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular",
                              "shouldIgnore": False, "oid": existing.oid if existing else None})
            self._json({"files": files, "commitOid": commit.oid})

        def lfs_batch(self, user, query, body, repo):
            hub.repo_for_write(repo, user)
            objects = []
            for obj in json.loads(body)["objects"]:
                entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                if obj["oid"] not in hub.lfs:
                    entry["actions"] = {"upload": {"href": f"{hub.url}/lfs/{obj['oid']}", "header": {}},
                                        "verify": {"href": f"{hub.url}/lfs/verify", "header": {}}}
                objects.append(entry)
            self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                       content_type="application/vnd.git-lfs+json")

        def lfs_put(self, user, query, body, oid):
            if hashlib.sha256(body).hexdigest() != oid:
                raise HubError(400, "sha256 does not match the uploaded bytes")
            hub.lfs[oid] = body
            self._send(200)

        def lfs_verify(self, user, query, body):
            payload = json.loads(body)
            if len(hub.lfs.get(payload["oid"], b"")) != payload["size"]:
                raise HubError(404, "object not found")
            self._json({"ok": True})

        def commit(self, user, query, body, repo, rev):
            info = hub.repo_for_write(repo, user)
            if rev not in info.branches:
                raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            parent = info.commits[info.branches[rev]]
            files, title = dict(parent.files), ""
            for line in body.splitlines():
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "header":
                    title = value["summary"]
                    if value.get("parentCommit") and value["parentCommit"] != parent.oid:
                        raise HubError(412, "parent commit is not the head of the branch")
                elif key == "file":
                    files[value["path"]] = Blob(base64.b64decode(value["content"]))
                elif key == "lfsFile":
                    if value["oid"] not in hub.lfs:
                        raise HubError(400, f"LFS object {value['oid']} was never uploaded")
                    files[value["path"]] = Blob(hub.lfs[value["oid"]], value["oid"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    files = {p: b for p, b in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            commit = info.add_commit(files, title, parent.oid)
            info.branches[rev] = commit.oid
            self._json({"commitUrl": f"{hub.url}/datasets/{repo}/commit/{commit.oid}", "commitOid": commit.oid,
                        "pullRequestUrl": None, "success": True})

        def tag(self, user, query, body, repo, rev):
            info = hub.repo_for_write(repo, user)
            commit = hub.commit_at(info, rev)
            name = json.loads(body)["tag"]
            if name in info.tags or name in info.branches:
                raise HubError(409, f"Tag {name} already exists")
            info.tags[name] = commit.oid
            self._json({"tag": name})

        def branch(self, user, query, body, repo, branch):
            info = hub.repo_for_write(repo, user)
            start = json.loads(body or b"{}").get("startingPoint") or "main"
            if branch in info.branches:
                raise HubError(409, f"Branch {branch} already exists")
            info.branches[branch] = hub.commit_at(info, start).oid
            self._json({"branch": branch})

        def refs(self, user, query, body, repo):
            info = hub.repo_for_read(repo, user)

            def refs_of(kind, mapping):
                return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": c} for n, c in sorted(mapping.items())]

            self._json({"branches": refs_of("heads", info.branches), "tags": refs_of("tags", info.tags),
                        "converts": [], "pullRequests": []})

        def commits(self, user, query, body, repo, rev):
            info = hub.repo_for_read(repo, user)
            commit, history = hub.commit_at(info, rev), []
            while commit is not None:
                history.append({"id": commit.oid, "title": commit.title, "message": "", "date": commit.date,
                                "authors": [{"user": repo.split("/")[0]}]})
                commit = info.commits.get(commit.parent) if commit.parent else None
            self._json(history)

        def tree(self, user, query, body, repo, rev, path=""):
            commit = hub.commit_at(hub.repo_for_read(repo, user), rev)
            entries = _entries(commit, path or "", query.get("recursive", ["false"])[0].lower() in ("1", "true"))
            if path and not entries:
                raise HubError(404, f"{path} does not exist at {rev}", "EntryNotFound")
            self._json(entries)

        def paths_info(self, user, query, body, repo, rev):
            commit = hub.commit_at(hub.repo_for_read(repo, user), rev)
            if self.headers.get("Content-Type", "").startswith("application/json"):
                paths = json.loads(body).get("paths", [])
            else:
                paths = parse_qs(body.decode()).get("paths", [])
            result = []
            for path in paths:
                path = path.strip("/")
                if path in commit.files:
                    result.append(_file_entry(path, commit.files[path]))
                elif any(p.startswith(path + "/") for p in commit.files) or path == "":
                    result.append({"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest()})
            self._json(result)

        def resolve(self, user, query, body, repo, rev, path):
            commit = hub.commit_at(hub.repo_for_read(repo, user), rev)
            blob = commit.files.get(path)
            if blob is None:
                raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
            content, status = blob.content, 200
            headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{blob.etag}"', "Accept-Ranges": "bytes"}
            if blob.lfs_sha256:
                headers.update({"X-Linked-Etag": f'"{blob.lfs_sha256}"', "X-Linked-Size": str(len(content))})
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
            if match and content:
                start = int(match[1]) if match[1] else max(len(content) - int(match[2]), 0)
                end = int(match[2]) if match[1] and match[2] else len(content) - 1
                end = min(end, len(content) - 1)
                if start >= len(content):
                    raise HubError(416, "Requested range not satisfiable")
                headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
                content, status = content[start:end + 1], 206
            self._send(status, content, headers, content_type="application/octet-stream")

    repo = r"(?P<repo>[^/]+/[^/]+?)"
    ROUTES = [
        ("POST", r"/api/repos/create", Handler.create_repo),
        ("POST", r"/api/validate-yaml", Handler.validate_yaml),
        ("GET", rf"/api/datasets/{repo}/refs", Handler.refs),
        ("GET", rf"/api/datasets/{repo}/commits/(?P<rev>[^/]+)", Handler.commits),
        ("GET", rf"/api/datasets/{repo}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", Handler.tree),
        ("POST", rf"/api/datasets/{repo}/paths-info/(?P<rev>[^/]+)", Handler.paths_info),
        ("POST", rf"/api/datasets/{repo}/preupload/(?P<rev>[^/]+)", Handler.preupload),
        ("POST", rf"/api/datasets/{repo}/commit/(?P<rev>[^/]+)", Handler.commit),
        ("POST", rf"/api/datasets/{repo}/tag/(?P<rev>[^/]+)", Handler.tag),
        ("POST", rf"/api/datasets/{repo}/branch/(?P<branch>[^/]+)", Handler.branch),
        ("GET", rf"/api/datasets/{repo}(?:/revision/(?P<rev>[^/]+))?", Handler.repo_info),
        ("POST", rf"/datasets/{repo}\.git/info/lfs/objects/batch", Handler.lfs_batch),
        ("PUT", r"/lfs/(?P<oid>[0-9a-f]{64})", Handler.lfs_put),
        ("POST", r"/lfs/verify", Handler.lfs_verify),
        ("GET", rf"/datasets/{repo}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", Handler.resolve),
    ]
    return Handler


if __name__ == "__main__":  # run by hand: python tests/hub_server.py TOKEN USER
    import sys
    import time

    fake = FakeHub({sys.argv[1]: sys.argv[2]} if len(sys.argv) > 2 else {}, port=int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    fake.start()
    print(fake.url, flush=True)
    while True:
        time.sleep(3600)
