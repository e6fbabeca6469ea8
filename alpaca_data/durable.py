"""Durable files: content hashes, fsync, and atomic replacement (readers see the old file or the new one).

`atomic_write` is the one way the project replaces a file: it writes a temporary file beside the target,
fsyncs it, renames it over the target and fsyncs the folder. Temporary files are hidden (`.NAME.tmp-PID-…`);
those left by a killed writer are removed by the next write to the same target, and are never listed.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

TMP_MARK = ".tmp-"


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in blocks (files may be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path_for(path: Path) -> Path:
    """A hidden temporary name beside `path`, marked with this process's id."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and TMP_MARK in name


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError, OSError):
        return False
    return True


def remove_stale_temps(path: Path) -> int:
    """Remove temporaries of `path` left by writers that died (their process no longer exists)."""
    removed = 0
    prefix = f".{path.name}{TMP_MARK}"
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return 0
    for sibling in siblings:
        if not sibling.name.startswith(prefix):
            continue
        pid = sibling.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            try:
                if sibling.is_dir():
                    shutil.rmtree(sibling)
                else:
                    sibling.unlink()
                removed += 1
            except OSError:
                pass
    return removed


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file handle whose content replaces `path` only when the block ends without an error."""
    path = Path(path)
    remove_stale_temps(path)
    tmp = temp_path_for(path)
    try:
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes) -> None:
    """Write next to the target, fsync, rename, fsync the folder."""
    with atomic_file(path) as handle:
        handle.write(data)


def write_json(path: Path, payload: Any) -> None:
    """A JSON document (sorted keys, indented, UTF-8), written atomically."""
    atomic_write(Path(path), (json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())
