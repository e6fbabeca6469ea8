"""Pull a pinned Hub revision into the store: download, verify, validate, then commit one revision.

When the repo holds `alpaca_manifest.json` (pushed by alpaca-kit), every shard is checked against its sha256 and
the records against the manifest's revision id, so the pulled revision has the SAME id, parents and extra as the
one that was pushed. Nothing touches the store until everything has been downloaded and checked.
"""
from __future__ import annotations

import datetime as dt
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from alpaca_data.durable import sha256_file
from alpaca_data.errors import UserError
from alpaca_data.hub import remote
from alpaca_data.hub.layout import DATA_DIR, HUB_MANIFEST, LAYOUT_FORMAT
from alpaca_data.records import content_hash
from alpaca_data.schema import RecordChecker
from alpaca_data.store import CommitResult, Store
from alpaca_data.store.store import NAME_PATTERN
from alpaca_data.store.tables import table_to_records


@dataclass
class PullResult:
    result: CommitResult
    repo_id: str
    revision: str  # what was asked for (branch, tag or commit)
    commit: str  # the Hub commit it resolved to
    verified: bool  # records matched an alpaca-kit manifest's revision id


def parse_spec(spec: str) -> tuple[str, str]:
    repo_id, _, revision = spec.strip().partition("@")
    return remote.check_repo_id(repo_id), revision or "main"


def pull(spec: str, *, dataset: str | None = None, store: Store | None = None, message: str = "") -> PullResult:
    repo_id, revision = parse_spec(spec)
    if dataset is not None and not NAME_PATTERN.fullmatch(dataset):
        raise UserError(f"{dataset!r}: invalid dataset name (letters, digits, . _ -; up to 100)", exit_code=2)
    secret = remote.token(required=False)
    api = remote.api(secret)
    where = f"{repo_id}@{revision}"
    with remote.hub_errors(repo_id, secret, revision), tempfile.TemporaryDirectory(prefix="alpaca-pull-") as tmp:
        info = api.repo_info(repo_id, repo_type=remote.REPO_TYPE, revision=revision)
        commit = info.sha
        files = sorted(s.rfilename for s in info.siblings or [])

        def download(name: str) -> Path:
            return Path(api.hf_hub_download(repo_id, name, repo_type=remote.REPO_TYPE, revision=commit,
                                            local_dir=tmp))

        origin: dict[str, Any] | None = None
        if HUB_MANIFEST in files:
            hub_manifest = _load_hub_manifest(download(HUB_MANIFEST), where)
            origin, shards = hub_manifest["revision"], hub_manifest["data_files"]
        else:
            shards = [{"path": name} for name in files if name.startswith(DATA_DIR + "/") and name.endswith(".parquet")]
            if not shards:
                raise UserError(f"{where}: no {HUB_MANIFEST} and no Parquet files under {DATA_DIR}/ in the repo")
        tables, sources = [], []
        for shard in shards:
            path = download(shard["path"])
            digest = sha256_file(path)
            if shard.get("sha256") and digest != shard["sha256"]:
                raise UserError(f"{where}: {shard['path']} does not match the sha256 in {HUB_MANIFEST}; nothing imported")
            try:
                table = pq.read_table(path)
            except (pa.ArrowException, OSError) as error:
                raise UserError(f"{where}: {shard['path']} is not a readable Parquet file ({type(error).__name__})") from None
            if shard.get("num_records") is not None and table.num_rows != shard["num_records"]:
                raise UserError(f"{where}: {shard['path']} holds {table.num_rows} records, "
                                f"{HUB_MANIFEST} says {shard['num_records']}; nothing imported")
            tables.append(table)
            sources.append({"path": f"hf://datasets/{repo_id}@{commit}/{shard['path']}", "sha256": digest,
                            "revision": commit})
    try:
        table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise UserError(f"{where}: the Parquet shards have incompatible columns ({error})") from None
    records = table_to_records(table)
    _validate(records, where)
    if origin is not None:
        found = content_hash(records)
        if found != origin.get("id"):
            raise UserError(f"{where}: the records hash to {found[:12]}, but {HUB_MANIFEST} names revision "
                            f"{str(origin.get('id'))[:12]}; the data was changed after it was published; "
                            "nothing imported")
    name = dataset or (origin or {}).get("dataset") or repo_id.split("/")[1]
    if not NAME_PATTERN.fullmatch(name):
        raise UserError(f"{name!r}: invalid dataset name; give one with --dataset", exit_code=2)
    hub_info = {"repo": repo_id, "commit": commit, "revision": revision, "endpoint": remote.endpoint()}
    extra = dict((origin or {}).get("extra") or {})
    extra["hub"] = {**hub_info, **({"origin_dataset": origin.get("dataset"), "origin_created_at": origin.get("created_at"),
                                    "origin_recipe": origin.get("recipe")} if origin else {})}
    store = store or Store.open()
    result = store.commit(
        name, records,
        message=message or (origin or {}).get("message") or f"pull {repo_id}@{commit[:12]}",
        parents=list(origin.get("parents", [])) if origin else None,
        recipe={"command": "pull", "options": {"repo": repo_id, "revision": revision, "commit": commit,
                                               "endpoint": remote.endpoint()}, "sources": sources},
        extra=extra)
    meta = store.read_meta(result.manifest, "hub") or {}
    pulls = [p for p in meta.get("pulls", []) if (p.get("repo"), p.get("commit")) != (repo_id, commit)]
    pulls.append({**hub_info, "pulled_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
    store.write_meta(result.manifest, "hub", {**meta, "revision": result.manifest.id, "pulls": pulls})
    return PullResult(result, repo_id, revision, commit, origin is not None)


def _load_hub_manifest(path: Path, where: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{where}: {HUB_MANIFEST} is not valid JSON") from None
    if not isinstance(data, dict) or data.get("format") != LAYOUT_FORMAT or not isinstance(data.get("revision"), dict) \
            or not isinstance(data.get("data_files"), list) or not all(
                isinstance(s, dict) and isinstance(s.get("path"), str) and s["path"].startswith(DATA_DIR + "/")
                and ".." not in s["path"] for s in data["data_files"]) or not data["data_files"]:
        raise UserError(f"{where}: {HUB_MANIFEST} is not an alpaca-kit hub manifest ({LAYOUT_FORMAT})")
    return data


def _validate(records: list[dict[str, Any]], where: str) -> None:
    checker = RecordChecker()
    problems = []
    for index, record in enumerate(records, start=1):
        for problem in checker.check(record):
            problems.append(f"record {index}: {problem.field}: {problem.reason}" if problem.field
                            else f"record {index}: {problem.reason}")
    if problems:
        raise UserError(f"{where}: {len(problems)} problem(s) in the records (first: {problems[0]}); nothing imported")
    if not records:
        raise UserError(f"{where}: holds no records; nothing imported")
