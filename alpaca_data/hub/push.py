"""Push a revision to a Hugging Face dataset repo: shards + card + manifest in ONE commit, then tags.

A second push of the same revision is a no-op: the repo already has the revision's tag (`rev-<12 hex>`), or the
branch head's `alpaca_manifest.json` names the same revision id. Either way no commit is made; missing tags are
added. The Hub commit is recorded in the store (`meta/<dataset>/<id>/hub.json`).
"""
from __future__ import annotations

import datetime as dt
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alpaca_data.errors import UserError
from alpaca_data.hub import remote
from alpaca_data.hub.card import CardOptions
from alpaca_data.hub.layout import DATA_DIR, HUB_MANIFEST, build_layout
from alpaca_data.store import Manifest, Store
from alpaca_data.store.store import NAME_PATTERN

TAG_PREFIX = "rev-"


def revision_tag(manifest: Manifest) -> str:
    return f"{TAG_PREFIX}{manifest.short_id}"


@dataclass
class PushResult:
    manifest: Manifest
    repo_id: str
    branch: str
    commit: str
    created: bool  # False: the repo already held this revision (no commit made)
    tags: list[str]
    url: str
    new_tags: list[str] = field(default_factory=list)


def push(store: Store, ref: str, repo_id: str, *, tags: list[str] | None = None, private: bool = False,
         branch: str = "main", shard_records: int | None = None, license: str | None = None,
         language: str | list[str] | None = None, pretty_name: str | None = None) -> PushResult:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    remote.check_repo_id(repo_id)
    for name in [branch, *(tags or [])]:
        if not NAME_PATTERN.fullmatch(name):
            raise UserError(f"{name!r}: invalid branch or tag name (letters, digits, . _ -)", exit_code=2)
    manifest = store.resolve(ref)
    secret = remote.token(required=True)
    wanted_tags = [revision_tag(manifest), *[t for t in (tags or []) if t != revision_tag(manifest)]]
    options = CardOptions.make(license=license, language=language, pretty_name=pretty_name, repo_id=repo_id,
                               endpoint=remote.endpoint())
    api = remote.api(secret)
    with remote.hub_errors(repo_id, secret, branch):
        api.create_repo(repo_id, repo_type=remote.REPO_TYPE, private=private, exist_ok=True)
        refs = api.list_repo_refs(repo_id, repo_type=remote.REPO_TYPE)
        tag_targets = {t.name: t.target_commit for t in refs.tags}
        branch_heads = {b.name: b.target_commit for b in refs.branches}
        for tag in wanted_tags[1:]:
            if tag in branch_heads:
                raise UserError(f"{repo_id}: {tag!r} is a branch on the Hub, not a tag")
        commit = _already_there(api, repo_id, manifest, tag_targets.get(wanted_tags[0]), branch_heads.get(branch))
        created = commit is None
        if created:
            for tag in wanted_tags[1:]:
                if tag in tag_targets:
                    raise UserError(f"{repo_id}: tag {tag!r} already exists on the Hub at "
                                    f"{tag_targets[tag][:12]} (pick another --tag)")
            if branch not in branch_heads:
                api.create_branch(repo_id, branch=branch, repo_type=remote.REPO_TYPE, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="alpaca-push-") as tmp:
                layout = build_layout(store, manifest, Path(tmp), options, shard_records=shard_records)
                operations: list[Any] = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(Path(tmp) / name))
                                         for name in layout.files]
                stale = _stale_shards(api, repo_id, branch, set(layout.files)) if branch in branch_heads else []
                operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
                info = api.create_commit(
                    repo_id, operations, repo_type=remote.REPO_TYPE, revision=branch,
                    commit_message=f"alpaca-kit: {manifest.dataset}@{manifest.short_id} "
                                   f"({manifest.record_count} records)",
                    commit_description=f"alpaca-kit revision {manifest.id}\n\n{manifest.data.get('message', '')}",
                    parent_commit=branch_heads.get(branch))
            commit = info.oid
        else:
            conflicting = [t for t in wanted_tags if t in tag_targets and tag_targets[t] != commit]
            if conflicting:
                raise UserError(f"{repo_id}: tag {conflicting[0]!r} already exists on the Hub at "
                                f"{tag_targets[conflicting[0]][:12]}, not at {commit[:12]} which holds this revision")
        new_tags = []
        for tag in wanted_tags:
            if tag not in tag_targets:
                api.create_tag(repo_id, tag=tag, revision=commit, repo_type=remote.REPO_TYPE,
                               tag_message=f"alpaca-kit revision {manifest.id}")
                new_tags.append(tag)
    url = f"{remote.endpoint()}/datasets/{repo_id}"
    _record(store, manifest, {"repo": repo_id, "endpoint": remote.endpoint(), "branch": branch, "commit": commit,
                              "tags": wanted_tags, "url": url, "private": private})
    return PushResult(manifest, repo_id, branch, commit, created, wanted_tags, url, new_tags)


def _already_there(api, repo_id: str, manifest: Manifest, tag_commit: str | None, head: str | None) -> str | None:
    """The Hub commit that already holds this revision (by its tag, else the branch head), or None."""
    for commit in (tag_commit, head):
        if commit and _manifest_id_at(api, repo_id, commit) == manifest.id:
            return commit
    return None


def _manifest_id_at(api, repo_id: str, commit: str) -> str | None:
    from huggingface_hub import errors

    try:
        with tempfile.TemporaryDirectory(prefix="alpaca-hub-") as tmp:
            path = api.hf_hub_download(repo_id, HUB_MANIFEST, repo_type=remote.REPO_TYPE, revision=commit,
                                       local_dir=tmp)
            data = json.loads(Path(path).read_text(encoding="utf-8"))
    except errors.RemoteEntryNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    revision = data.get("revision") if isinstance(data, dict) else None
    return revision.get("id") if isinstance(revision, dict) else None


def _stale_shards(api, repo_id: str, branch: str, keep: set[str]) -> list[str]:
    """Files under data/ on the branch that the new commit does not write (an earlier push with more shards)."""
    from huggingface_hub import errors
    from huggingface_hub.hf_api import RepoFile

    try:
        entries = list(api.list_repo_tree(repo_id, path_in_repo=DATA_DIR, recursive=True, revision=branch,
                                          repo_type=remote.REPO_TYPE))
    except errors.RemoteEntryNotFoundError:
        return []
    return sorted(e.path for e in entries if isinstance(e, RepoFile) and e.path not in keep)


def _record(store: Store, manifest: Manifest, push_info: dict[str, Any]) -> None:
    """Keep one entry per (endpoint, repo, branch), newest last."""
    meta = store.read_meta(manifest, "hub") or {}
    pushes = [p for p in meta.get("pushes", []) if (p.get("endpoint"), p.get("repo"), p.get("branch"))
              != (push_info["endpoint"], push_info["repo"], push_info["branch"])]
    push_info = {**push_info, "pushed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    pushes.append(push_info)
    store.write_meta(manifest, "hub", {**meta, "revision": manifest.id, "pushes": pushes,
                                       "repo": push_info["repo"], "commit": push_info["commit"]})
