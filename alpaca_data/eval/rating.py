"""Blind pairwise rating by people (`alpaca-data eval rate A B`): a small web server and its state.

Each rater sees the compared items in an order seeded by (seed, rater), each with its two answers placed
left/right by a keyed hash of (rater, item) under a random key made when the rating journal starts and kept
beside it, never sent (`rating_journal`): a reload or a restart shows the same placement, a new rating session
another one, and no rater can compute it. Nothing tells which model wrote which answer (the API speaks of
"left" and "right" only; no generator, dataset or revision names; answers are trimmed of surrounding whitespace).

Raters are authenticated: every API call that names a rater carries `Authorization: Bearer TOKEN`, that rater's
token (401 without a valid one, 403 with another rater's). Listed raters (`--raters`) get theirs in the link
printed for them at start; with no list, a name typed in the page is claimed by that browser on first use
(`POST /api/raters`, journalled), and nobody else can act for it. Tokens are keyed by the journal's key, so links
keep working after a restart. Writes pass `alpaca_data.web.Guard` (JSON only, no foreign Origin, 64 KiB bodies).
A click (or key 1/2/3) becomes a canonical preference (1 = output_1 better, 2 = output_2, 0 = tie) and an
`order` ("12" when output_1 was on the left), journalled (fsynced) before the API answers
(`alpaca_data.eval.rating_journal`). The annotations revision is committed from the journal when the server
stops (Ctrl-C / SIGTERM), on `POST /api/commit`, or by `eval rate --commit-only`.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import random
import re
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from importlib import resources
from typing import Any

from alpaca_data.errors import UsageError, UserError
from alpaca_data.eval.annotations import annotation_record, commit_rows, revision_ref
from alpaca_data.eval.pairs import Comparison
from alpaca_data.eval.rating_journal import CHOICES, Judgment, RatingJournal, canonical_preference, journal_path
from alpaca_data.store import CommitResult, Store
from alpaca_data.web import Guard, server_config

RATER_NAME = re.compile(r"\A\w[\w .@'-]{0,39}\Z")  # letters of any script, digits, a few separators
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
MAX_BODY_BYTES = 64 * 1024  # a judgment is a few hundred bytes


class RatingError(Exception):
    """A request the API refuses: an HTTP status and one line the page shows."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers


def default_dataset(manifest_1: Any, manifest_2: Any) -> str:
    """`ratings-<A>-vs-<B>`, made a valid dataset name (the store allows letters, digits, . _ -; up to 100)."""
    name = _UNSAFE_NAME_CHARS.sub("-", f"ratings-{manifest_1.dataset}-vs-{manifest_2.dataset}")
    return name[:100].rstrip("-._") or "ratings"


def parse_raters(text: str | None) -> list[str] | None:
    """`--raters ann,bob` as a list (None: any name typed in the page is accepted)."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise UsageError("--raters: give at least one name (e.g. --raters ann,bob)")
    for name in names:
        if not RATER_NAME.match(name):
            raise UsageError(f"--raters: {name!r} is not a usable name (up to 40 letters, digits, space . @ ' _ -)")
    if len(set(names)) != len(names):
        raise UsageError("--raters: a name is given twice")
    return names


def _seeded_int(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "big")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RatingSession:
    """Items, placements and the judgments of every rater of one comparison, safe to use from many threads."""

    def __init__(self, store: Store, comparison: Comparison, *, dataset: str, seed: int = 0,
                 raters: list[str] | None = None, limit: int | None = None):
        Store.check_dataset_name(dataset)
        self.store, self.comparison, self.dataset = store, comparison, dataset
        self.seed, self.raters, self.limit = seed, raters, limit
        self.pairs = {pair.key: pair for pair in comparison.pairs}
        self.keys = list(self.pairs)
        self.journal = RatingJournal(journal_path(store.root, dataset, comparison.manifest_1.id,
                                                  comparison.manifest_2.id))
        self._judgments: dict[str, dict[str, Judgment]] = {}
        self._claimed: list[str] = []  # names typed in and taken by a browser (no --raters)
        self._key: bytes | None = None  # the journal's secret: placements and tokens
        self._secret_placements = True  # False: a journal from before keyed placements (seed-based)
        self._owners: dict[str, str] = {}  # token -> rater, for the raters known so far
        self._sequences: dict[str, list[str]] = {}
        self._lock = threading.Lock()  # judgments and their journal lines, in one order
        self._commit_lock = threading.Lock()  # one commit at a time, each from a full snapshot

    @property
    def identity(self) -> dict[str, Any]:
        """What a restarted server must share with the journal to resume it."""
        return {"output_1": self.comparison.manifest_1.id, "output_2": self.comparison.manifest_2.id,
                "seed": self.seed, "limit": self.limit}

    def open(self, append: bool = True) -> RatingSession:
        resumed = self.journal.open(self.identity, append=append)
        self._judgments, self._claimed = resumed.judgments, list(resumed.claimed)
        self._key, self._secret_placements = resumed.key, resumed.secret_placements
        if self._key is not None:
            self._owners = {self.token(name): name for name in [*(self.raters or []), *self._claimed]}
        return self

    def close(self) -> None:
        self.journal.close()

    # ------------------------------------------------------------------ what a rater sees

    def check_rater(self, name: Any) -> str:
        if not isinstance(name, str) or not name.strip():
            raise RatingError(400, "choose a rater name first")
        name = name.strip()
        if self.raters is not None and name not in self.raters:
            raise RatingError(403, f"{name!r} is not one of this comparison's raters")
        if not RATER_NAME.match(name):
            raise RatingError(400, "a rater name is up to 40 letters, digits, space . @ ' _ -")
        return name

    def sequence(self, rater: str) -> list[str]:
        """The items in this rater's order (seeded, so every session of the rater sees the same order)."""
        if rater not in self._sequences:
            keys = list(self.keys)
            random.Random(_seeded_int("order", self.seed, rater)).shuffle(keys)
            self._sequences[rater] = keys
        return self._sequences[rater]

    def placement(self, rater: str, key: str) -> str:
        """"12" when output_1 goes on the left for this rater and item, else "21"."""
        if not self._secret_placements:  # a journal started before placements were keyed keeps its own
            return "12" if _seeded_int("side", self.seed, rater, key) % 2 == 0 else "21"
        return "12" if self._keyed("side", rater, key)[0] % 2 == 0 else "21"

    def _keyed(self, *parts: str) -> bytes:
        if self._key is None:
            raise RuntimeError("the rating session is not open for serving")
        return hmac.new(self._key, "\x1f".join(parts).encode(), hashlib.sha256).digest()

    # ------------------------------------------------------------------ who is rating

    def token(self, rater: str) -> str:
        """The rater's own token (the same after a restart: keyed by the journal's secret)."""
        return self._keyed("token", rater)[:16].hex()

    def rater_url(self, base_url: str, rater: str) -> str:
        from urllib.parse import urlencode

        return f"{base_url}?{urlencode({'rater': rater, 'token': self.token(rater)})}"

    def token_owner(self, authorization: str | None) -> str:
        """The rater whose token `Authorization: Bearer TOKEN` carries (401 when none does)."""
        scheme, _, given = (authorization or "").partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            raise RatingError(401, "a rater's token is required (open the link given to you)",
                              {"WWW-Authenticate": "Bearer"})
        with self._lock:
            owners = dict(self._owners)
        for token, name in owners.items():
            if hmac.compare_digest(token.encode(), given.encode()):
                return name
        raise RatingError(401, "this token is not one of this comparison's raters", {"WWW-Authenticate": "Bearer"})

    def authenticate(self, rater: Any, authorization: str | None) -> str:
        """The rater a request names, when its token is that rater's (else 401 or 403)."""
        owner = self.token_owner(authorization)
        rater = self.check_rater(rater)
        if rater != owner:
            raise RatingError(403, "this token belongs to another rater")
        return rater

    def claim(self, name: Any) -> dict[str, str]:
        """A typed name (no --raters) for the browser that asks first: its token, journalled as taken."""
        if self.raters is not None:
            raise RatingError(403, "this comparison's raters use the links printed when the server started")
        name = self.check_rater(name)
        with self._lock:
            if name in self._claimed:
                raise RatingError(409, f"the name {name!r} is taken by another browser; choose another")
            self.journal.record_claim(name)
            self._claimed.append(name)
            token = self.token(name)
            self._owners[token] = name
        return {"rater": name, "token": token}

    def state(self, rater: Any, authorization: str | None) -> dict[str, Any]:
        rater = self.authenticate(rater, authorization)
        with self._lock:
            return self._state(rater)

    def _state(self, rater: str) -> dict[str, Any]:
        judged = self._judgments.get(rater, {})
        pending = next((key for key in self.sequence(rater) if key not in judged), None)
        state: dict[str, Any] = {"rater": rater, "done": len(judged), "total": len(self.keys),
                                 "finished": pending is None, "can_undo": bool(judged), "item": None}
        if pending is not None:
            pair = self.pairs[pending]
            # trimmed: a model's habit of leading newlines would tell the rater who wrote which answer
            left, right = ((pair.output_1.strip(), pair.output_2.strip()) if self.placement(rater, pending) == "12"
                           else (pair.output_2.strip(), pair.output_1.strip()))
            state["item"] = {"id": pending, "instruction": pair.instruction, "input": pair.input,
                             "left": left, "right": right}
        return state

    # ------------------------------------------------------------------ judging

    def judge(self, rater: Any, item: Any, choice: Any, authorization: str | None) -> dict[str, Any]:
        """Store one judgment (journalled before this returns) and give the rater's next item."""
        rater = self.authenticate(rater, authorization)
        if choice not in CHOICES:
            raise RatingError(400, f"choice must be one of {', '.join(CHOICES)}")
        if item not in self.pairs:
            raise RatingError(404, "no such item in this comparison")
        with self._lock:
            if item in self._judgments.get(rater, {}):
                raise RatingError(409, "this item is already judged (undo it first to change it)")
            order = self.placement(rater, item)
            judgment = Judgment(rater, item, choice, order, canonical_preference(choice, order), _now())
            self.journal.record_judgment(judgment)
            self._judgments.setdefault(rater, {})[item] = judgment
            return self._state(rater)

    def undo(self, rater: Any, authorization: str | None) -> dict[str, Any]:
        """Withdraw the rater's last judgment; that item is the next one shown again."""
        rater = self.authenticate(rater, authorization)
        with self._lock:
            judged = self._judgments.get(rater, {})
            if not judged:
                raise RatingError(409, "nothing to undo")
            item = next(reversed(judged))
            self.journal.record_undo(rater, item)
            del judged[item]
            return self._state(rater)

    def progress(self) -> dict[str, int]:
        with self._lock:
            return {rater: len(self._judgments.get(rater, {})) for rater in self._rater_order()}

    def _rater_order(self) -> list[str]:
        listed = list(self.raters or [])
        return listed + sorted(name for name in self._judgments if name not in listed)

    # ------------------------------------------------------------------ committing

    def rows(self) -> list[dict[str, Any]]:
        """Annotation records of every standing judgment: by rater, then in comparison order."""
        comparison = self.comparison
        with self._lock:
            snapshot = {rater: dict(items) for rater, items in self._judgments.items()}
            raters = self._rater_order()
        rows = []
        for rater in raters:
            judged = snapshot.get(rater, {})
            for key in self.keys:
                judgment = judged.get(key)
                if judgment is None:
                    continue
                pair = self.pairs[key]
                rows.append(annotation_record(
                    instruction=pair.instruction, input=pair.input, output_1=pair.output_1,
                    generator_1=comparison.generator_1, output_2=pair.output_2, generator_2=comparison.generator_2,
                    annotator=rater, preference=judgment.preference, item_id=pair.item_id,
                    category=pair.category, order=judgment.order, raw=judgment.choice, created_at=judgment.at))
        return rows

    def commit(self) -> CommitResult | None:
        """The annotations revision of every standing judgment (None when there is none yet)."""
        with self._commit_lock:
            rows = self.rows()
            if not rows:
                return None
            comparison = self.comparison
            raters = list(dict.fromkeys(row["annotator"] for row in rows))
            recipe = {"command": "eval rate",
                      "output_1": revision_ref(comparison.manifest_1, comparison.generator_1),
                      "output_2": revision_ref(comparison.manifest_2, comparison.generator_2),
                      "raters": raters, "seed": self.seed, "limit": self.limit, "items": len(self.keys),
                      "journal": str(self.journal.path.relative_to(self.store.root))}
            message = (f"{len(rows)} blind judgments by {len(raters)} rater(s): "
                       f"{comparison.generator_1} (output_1) vs {comparison.generator_2} (output_2)")
            return commit_rows(self.store, self.dataset, rows, message=message, recipe=recipe)


# ---------------------------------------------------------------------- the web app


def page_html() -> bytes:
    return resources.files("alpaca_data.eval").joinpath("static/rate.html").read_bytes()


def build_app(session: RatingSession, on_commit: Callable[[CommitResult | None], None] | None = None):
    """The FastAPI app: the page at `/`, and a JSON API that never names the models."""
    from fastapi import Body, FastAPI, Header, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    html = page_html()

    def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers={"Cache-Control": "no-store",
                                                                              **(headers or {})})

    @app.exception_handler(RatingError)
    def _refused(_: Request, error: RatingError) -> JSONResponse:
        return error_response(error.status, str(error), error.headers)

    @app.exception_handler(HTTPException)
    def _http(_: Request, error: HTTPException) -> JSONResponse:
        message = "no such route" if error.status_code == 404 else str(error.detail)
        return error_response(error.status_code, message, dict(error.headers or {}))

    @app.exception_handler(RequestValidationError)
    def _malformed(_: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(400, "malformed request: send JSON with rater, item and choice")

    # writes as JSON from this server's own page (or no browser at all), bodies capped before they are read
    app.add_middleware(Guard, max_body=MAX_BODY_BYTES, error=error_response)

    @app.get("/")
    def page() -> Response:
        return Response(html, media_type="text/html; charset=utf-8", headers={
            "Cache-Control": "no-store", "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
            "style-src 'unsafe-inline'; frame-ancestors 'none'"})

    @app.get("/api/config")
    def config() -> dict[str, Any]:
        return {"raters": session.raters, "total": len(session.keys)}

    @app.get("/api/state")
    def state(rater: str = "", authorization: str | None = Header(None)) -> dict[str, Any]:
        return session.state(rater, authorization)

    @app.post("/api/raters")
    def claim(rater: str = Body(..., embed=True)) -> dict[str, Any]:
        return session.claim(rater)

    @app.post("/api/judge")
    def judge(rater: str = Body(...), item: str = Body(...), choice: str = Body(...),
              authorization: str | None = Header(None)) -> dict[str, Any]:
        return session.judge(rater, item, choice, authorization)

    @app.post("/api/undo")
    def undo(rater: str = Body(..., embed=True), authorization: str | None = Header(None)) -> dict[str, Any]:
        return session.undo(rater, authorization)

    @app.post("/api/commit")
    def commit(authorization: str | None = Header(None)) -> dict[str, Any]:
        session.token_owner(authorization)  # any rater may commit; nobody else
        try:
            result = session.commit()
        except UserError as error:
            raise RatingError(503, f"commit failed: {error}") from None
        if on_commit is not None:
            on_commit(result)
        if result is None:
            return {"records": 0, "revision": None}
        return {"records": result.manifest.record_count, "revision": result.id, "created": result.created}

    return app


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port), bound before the URL is printed so it is never refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(app: Any, sock: socket.socket) -> None:
    """Run until Ctrl-C or SIGTERM, then return normally (the caller commits; uvicorn would re-raise)."""
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in originals.items():
                    signal.signal(sig, handler)

    config = server_config(app, max_connections=256, log_level="warning", access_log=False, lifespan="off",
                           timeout_graceful_shutdown=5)
    _Server(config).run(sockets=[sock])
