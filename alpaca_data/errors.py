"""Errors meant for users: one line, no traceback, a defined exit code."""
from __future__ import annotations

import re
from pathlib import Path


class UserError(Exception):
    """A mistake in the user's input or environment. Printed as one line; exit code 1."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(UserError):
    """Wrong command-line usage (bad option values, conflicting flags). Exit code 2."""

    exit_code = 2


# A Hub model id is NAME or OWNER/NAME (huggingface_hub's own rule, shortened): anything else is a path.
_HUB_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,95}(?:/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?\Z")
# What a folder must hold to be worth handing to transformers, by kind of argument.
_FOLDER_FILES = {
    "model": ("config.json",),
    "checkpoint": ("config.json",),
    "tokenizer": ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model", "spiece.model",
                  "vocab.txt"),
}


def looks_like_path(ref: str) -> bool:
    """True when a model reference means a local folder, never a Hub id: it starts with `/`, `.` or `~`, has a
    backslash or more than one `/`, exists here, or its first part is an existing folder (`models/nothing` beside
    a `models/` folder). A plain NAME or OWNER/NAME that is none of these is a Hub id."""
    if ref.startswith(("/", ".", "~")) or "\\" in ref or not _HUB_ID.fullmatch(ref):
        return True
    return Path(ref).exists() or ("/" in ref and Path(ref.split("/", 1)[0]).is_dir())


def refuse_missing_model_path(ref: str, label: str | None = None, *, kind: str = "model", hub: bool = True) -> None:
    """The one local check of a model, tokenizer or checkpoint argument (`kind`), made before anything imports
    transformers or reaches the Hub: a reference that looks like a path (`looks_like_path`) must be a folder
    holding that kind of files (config.json; tokenizer files for a tokenizer), or it is one line at once, and
    it is never looked up on the Hub. A Hub id with HF_HUB_OFFLINE set must be in the local cache. With
    `hub=False` (arguments that only take folders: serve, detect) every reference is a path."""
    name = label or ref
    if hub and not looks_like_path(ref):
        files = _FOLDER_FILES.get(kind, _FOLDER_FILES["model"])
        if _hub_offline() and not _in_hub_cache(ref, files):
            raise UserError(f"{name}: not in the local Hugging Face cache, and HF_HUB_OFFLINE is set (unset it to "
                            "download it from the Hub, or give a local folder)")
        if not _hub_offline() and not _in_hub_cache(ref, files) and not _hub_resolves():
            # `models/nothing` is shaped like a Hub id too: on a machine that cannot even resolve the Hub's name,
            # looking it up would only retry for a minute before failing
            raise UserError(f"{name}: no such {kind} folder, and not looked up as a Hub id: the Hub "
                            f"({_hub_host()}) cannot be reached from here (no such name)")
        return
    folder = Path(ref).expanduser()
    if not folder.exists():
        raise UserError(f"{name}: no such {kind} folder")
    if not folder.is_dir():
        raise UserError(f"{name}: not a {kind} folder (a file; a {kind} is a folder such as alpaca-train writes)")
    needed = _FOLDER_FILES.get(kind, _FOLDER_FILES["model"])
    adapter = kind != "tokenizer" and (folder / "adapter_config.json").is_file()  # a peft adapter (model_loading)
    if not adapter and not any((folder / file).is_file() for file in needed):
        raise UserError(f"{name}: not a {kind} folder (no {' or '.join(needed)} in it)")


def _hub_host() -> str:
    import os
    from urllib.parse import urlsplit

    return urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"


def _hub_resolves() -> bool:
    """Whether the Hub's host name resolves (a DNS question only: the Hub itself is not contacted)."""
    import socket

    try:
        socket.getaddrinfo(_hub_host(), 443)
        return True
    except OSError:
        return False


def _hub_offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _in_hub_cache(repo_id: str, files: tuple[str, ...]) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo_id, file), str) for file in files)


def one_line(error: BaseException, limit: int = 400) -> str:
    """An exception's whole message on one line (transformers' messages span several: the first alone is cut
    off mid-sentence, e.g. "Couldn't instantiate the backend tokenizer from one of: ")."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
