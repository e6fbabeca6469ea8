"""Run the viewer: bind the port first (a port in use fails at once), index every referenced revision, and only
then listen, so the page and its search are ready the moment the port opens."""
from __future__ import annotations

import socket
from collections.abc import Callable

from alpaca_data.errors import UserError
from alpaca_data.store import Manifest, Store
from alpaca_data.view.app import build_app
from alpaca_data.view.service import Viewer


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (not listening yet: connections are refused until `sock.listen`)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UserError(f"--host {host!r}: {error.strerror or error}", exit_code=2) from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sock


def run(store: Store, host: str, port: int, *, say: Callable[[str], None], on_listen: Callable[[str], None]) -> None:
    """Serve until Ctrl-C / SIGTERM."""
    from alpaca_data.eval.rating import serve, url_of

    if not store.datasets():
        raise UserError(f"{store.root}: the store holds no dataset yet (import one with `alpaca-data import`)")
    sock = bind(host, port)
    viewer = Viewer(store)
    try:
        def progress(manifest: Manifest) -> None:
            say(f"indexing {manifest.dataset}@{manifest.short_id} ({manifest.record_count} records)")

        for note in viewer.prepare(progress):
            say(f"note: {note}")
        sock.listen(128)
        on_listen(url_of(sock))
        serve(build_app(viewer), sock)
    finally:
        viewer.close()
        sock.close()
