"""Make docs/chat-page.png: the `alpaca-train serve` page on a tiny checkpoint trained by alpaca-train
(random weights and two steps of training, hence the gibberish), one answer flagged.

    .venv/bin/python scripts/chat_screenshot.py [OUT.png]
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser import CHROMIUM_ARGS, chromium_path  # noqa: E402
from tests.serve_fixtures import ServeProcess, train_tiny_checkpoint  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "chat-page.png")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        trained = train_tiny_checkpoint(Path(folder))
        with ServeProcess(trained.path, "--default-max-tokens", "48", "--flags-file", Path(folder) / "flags.jsonl"
                          ) as server, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1000, "height": 720})
            page.goto(server.base_url + "/")
            page.wait_for_selector("#accept:not([disabled])")
            page.screenshot(path=str(out.with_name("chat-notice.png")))
            page.click("#accept")
            for turn, text in enumerate(("Give three tips for staying healthy.", "What is the capital of France?")):
                page.fill("#prompt", text)
                page.keyboard.press("Enter")
                # messages alternate you / model: the model's answer of this turn is message 2 * (turn + 1)
                page.wait_for_selector(f".message.assistant:nth-of-type({2 * turn + 2}) .tools")
            page.locator("button.flag").last.click()
            page.locator(".flag-comment").last.fill("not an answer to the question")
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
            browser.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
