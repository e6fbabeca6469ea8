"""The files of a published revision, as `datasets` expects them on the Hub or in a folder:

    README.md                              dataset card (YAML metadata + body)
    alpaca_manifest.json                   the store manifest, the shard list with hashes, the layout format
    data/train-00000-of-0000N.parquet      the records, in revision order, split into N shards
"""
from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from alpaca_data.durable import fsync_dir, sha256_file
from alpaca_data.errors import UserError
from alpaca_data.hub.card import CardOptions, render_card
from alpaca_data.store import Manifest, Store

LAYOUT_FORMAT = "alpaca-kit/hub-layout@1"
HUB_MANIFEST = "alpaca_manifest.json"
CARD_FILE = "README.md"
DATA_DIR = "data"
MAX_SHARD_BYTES = 256 * 1024**2  # Arrow bytes per shard; the Hub viewer and `datasets` like shards well under 1 GB


def shard_name(index: int, count: int) -> str:
    return f"{DATA_DIR}/train-{index:05d}-of-{count:05d}.parquet"


@dataclass
class Layout:
    folder: Path
    manifest: Manifest
    files: list[str]  # paths relative to folder, README.md and the manifest included
    shards: list[dict[str, Any]]
    card: str
    hub_manifest: dict[str, Any]


def build_layout(store: Store, manifest: Manifest, folder: Path, options: CardOptions,
                 shard_records: int | None = None, max_shard_bytes: int = MAX_SHARD_BYTES) -> Layout:
    """Write the layout of `manifest` into an existing empty folder, streamed: a batch in memory at a time."""
    schema = store.data_schema(manifest)
    rows = manifest.record_count
    num_bytes = sum(batch.nbytes for batch in store.iter_batches(manifest))  # what the whole table would take
    if shard_records:
        count = max(1, math.ceil(rows / shard_records))
    else:
        count = max(1, math.ceil(num_bytes / max_shard_bytes))
    per_shard = math.ceil(rows / count) if rows else 0
    (folder / DATA_DIR).mkdir(parents=True, exist_ok=True)
    writers = [pq.ParquetWriter(folder / shard_name(index, count), schema, compression="zstd")
               for index in range(count)]
    try:
        offset = 0
        for batch in store.iter_batches(manifest):
            while batch.num_rows:
                index = min(offset // per_shard, count - 1)
                take = min(batch.num_rows, (index + 1) * per_shard - offset) if index < count - 1 else batch.num_rows
                writers[index].write_batch(batch.slice(0, take))
                batch, offset = batch.slice(take), offset + take
    finally:
        for writer in writers:
            writer.close()
    shards = []
    for index in range(count):
        name = shard_name(index, count)
        part_rows = max(0, min(per_shard, rows - index * per_shard)) if index < count - 1 else \
            rows - per_shard * (count - 1)
        shards.append({"path": name, "num_records": part_rows, "size": (folder / name).stat().st_size,
                       "sha256": sha256_file(folder / name)})
    card = render_card(store, manifest, schema=schema, num_bytes=num_bytes,
                       download_size=sum(s["size"] for s in shards), shards=[s["path"] for s in shards],
                       options=options)
    (folder / CARD_FILE).write_text(card, encoding="utf-8")
    hub_manifest = {"format": LAYOUT_FORMAT, "revision": manifest.data, "data_files": shards}
    (folder / HUB_MANIFEST).write_text(json.dumps(hub_manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n",
                                       encoding="utf-8")
    files = [CARD_FILE, HUB_MANIFEST, *(s["path"] for s in shards)]
    return Layout(folder, manifest, files, shards, card, hub_manifest)


def write_hub_layout(store: Store, ref: str | Manifest, folder: str | os.PathLike, *, shard_records: int | None = None,
                     license: str | None = None, language: str | list[str] | None = None,
                     pretty_name: str | None = None, repo_id: str | None = None) -> Layout:
    """Write the files a push would upload into `folder` (created; an earlier layout there is replaced).

    `datasets.load_dataset(folder)` then reads the records with the card's configs.
    """
    manifest = ref if isinstance(ref, Manifest) else store.resolve(ref)
    options = CardOptions.make(license=license, language=language, pretty_name=pretty_name, repo_id=repo_id)
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise UserError(f"{target}: exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not (target / HUB_MANIFEST).exists():
        raise UserError(f"{target}: folder is not empty and holds no earlier hub layout; give a new or empty folder")
    if not target.parent.exists():
        raise UserError(f"{target.parent}: no such directory")
    staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        layout = build_layout(store, manifest, staging, options, shard_records=shard_records)
        target.mkdir(exist_ok=True)
        for old in sorted((target / DATA_DIR).glob("train-*.parquet")) if (target / DATA_DIR).is_dir() else []:
            old.unlink()
        (target / DATA_DIR).mkdir(exist_ok=True)
        for name in layout.files:
            os.replace(staging / name, target / name)
        fsync_dir(target / DATA_DIR)
        fsync_dir(target)
    except OSError as error:
        raise UserError(f"{target}: cannot write hub layout: {error.strerror or error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    layout.folder = target
    return layout
