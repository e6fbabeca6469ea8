"""Talking to the Hub: endpoint and token, and turning client errors into one-line UserErrors.

The token is read from HF_TOKEN (or the huggingface_hub login) and is never written anywhere: every message
that leaves this module goes through `redact`, in case a server or client echoes it back.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator

from alpaca_data import secrets
from alpaca_data.errors import UserError

REPO_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}\Z")
REPO_TYPE = "dataset"
# e.g. "HTTP status client error (404 Not Found), domain: http://127.0.0.1:8000/api/datasets/a/b/xet-write-token/main"
_HTTP_STATUS = re.compile(r"HTTP status (?:client |server )?error \((?P<status>\d{3}[^)]*)\),? (?:domain|url): "
                          r"(?P<url>[^\s)]+)")


def endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def token(required: bool) -> str | None:
    from huggingface_hub import get_token

    value = os.environ.get("HF_TOKEN") or get_token()
    if required and not value:
        raise UserError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access)")
    return value or None


def check_repo_id(repo_id: str) -> str:
    if not REPO_PATTERN.fullmatch(repo_id or ""):
        raise UserError(f"{repo_id!r}: expected a Hub dataset repo as USER/NAME", exit_code=2)
    return repo_id


def api(secret: str | None):
    plain_transfers_off_the_hub()
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint(), token=secret if secret else False, library_name="alpaca-kit")


def plain_transfers_off_the_hub() -> None:
    """Xet transfers need huggingface.co's Xet service: any other endpoint (tests/hub_server.py, a mirror, a
    self-hosted Hub) answers `.../xet-write-token/main` with 404, so there files go by plain HTTP and LFS, as if
    HF_HUB_DISABLE_XET=1 were set. A value the user sets wins either way."""
    from urllib.parse import urlsplit

    if "HF_HUB_DISABLE_XET" in os.environ:
        return
    host = (urlsplit(endpoint()).hostname or "").lower()
    if host in ("huggingface.co", "hf.co") or host.endswith((".huggingface.co", ".hf.co")):
        return
    os.environ["HF_HUB_DISABLE_XET"] = "1"
    from huggingface_hub import constants

    constants.HF_HUB_DISABLE_XET = True  # read at each transfer; set too in case the client was imported already


def redact(text: str, secret: str | None) -> str:
    """One line, with the token (and anything shaped like a credential) masked."""
    secrets.register(secret)
    return " ".join(secrets.redact(str(text)).split())


@contextlib.contextmanager
def hub_errors(repo_id: str, secret: str | None, revision: str | None = None) -> Iterator[None]:
    """Client and HTTP failures as one line (no token, no traceback)."""
    import httpx2
    from huggingface_hub import errors

    where = endpoint()
    at = f"{repo_id}@{revision}" if revision else repo_id
    try:
        yield
    except UserError as error:
        raise UserError(redact(str(error), secret), exit_code=error.exit_code) from None
    except errors.OfflineModeIsEnabled:
        raise UserError("HF_HUB_OFFLINE is set: unset it to reach the Hub") from None
    except errors.RevisionNotFoundError:
        raise UserError(f"{at}: no such revision (branch, tag or commit) in the dataset repo on {where}") from None
    except errors.RepositoryNotFoundError:
        raise UserError(f"{repo_id}: no such dataset repo on {where} (or it is private and the token cannot "
                        "see it)") from None
    except errors.LocalEntryNotFoundError:
        raise UserError(f"cannot reach the Hub at {where} and the files are not cached") from None
    except errors.RemoteEntryNotFoundError:
        raise UserError(f"{at}: a file is missing from the dataset repo on {where}") from None
    except errors.HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        detail = redact(error.server_message or "", secret)
        if status == 401:
            message = f"{where} refused the token (401 Unauthorized); check HF_TOKEN"
        elif status == 403:
            message = (f"{repo_id}: permission denied (403 Forbidden): the repo belongs to another user or "
                       "organisation, or the token has no write access")
        elif status == 404:
            message = f"{at}: not found on {where} (404)"
        elif status == 409:
            message = f"{at}: conflict on {where} (409)"
        else:
            message = f"{at}: the Hub at {where} answered {status}"
        raise UserError(message + (f": {detail}" if detail and status not in (401, 403) else "")) from None
    except (httpx2.TransportError, ConnectionError) as error:
        answered = _HTTP_STATUS.search(str(error))  # hf_xet reports a server's HTTP answer as a ConnectionError
        if answered:
            status, url = answered.group("status"), answered.group("url")
            hint = (" (a Hub without Xet storage: set HF_HUB_DISABLE_XET=1)" if "xet" in url.lower() else "")
            raise UserError(f"the Hub at {where} answered {status} for {redact(url, secret)}{hint}") from None
        raise UserError(f"cannot reach the Hub at {where}: {redact(type(error).__name__, secret)}"
                        f" ({redact(str(error), secret) or 'no answer'})") from None
    except json.JSONDecodeError as error:  # a proxy's HTML page, or a server that is not a Hub
        raise UserError(f"{at}: the server at {where} did not answer like a Hugging Face Hub (is HF_ENDPOINT "
                        f"right?): {redact(type(error).__name__, secret)}") from None
