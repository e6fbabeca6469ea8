"""A real headless Chromium (Debian's `chromium`) driven by Playwright's Python client, for page tests.

`scripts/install-browser.sh` (run by `make test`) installs Chromium; where it cannot be installed the
tests that need it fail and say why (nothing in the suite is skipped).
"""
from __future__ import annotations

import shutil

import pytest

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for one test module; each test opens its own context (`browser.new_context()`).

    Module-wide, not session-wide: Playwright's sync API keeps an asyncio loop running in the main thread
    while it is open, and later tests that call `asyncio.run` must not find it."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        pytest.fail("Debian's chromium is not installed: scripts/install-browser.sh (run by `make test`) could not "
                    "install it here; install it (apt-get install chromium) and run the tests again", pytrace=False)
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()
