"""Make docs/chat-page.png: the `alpaca-train serve` page in a real conversation, one answer flagged.

The checkpoint is SmolLM2-135M-Instruct fine-tuned by scripts/real_model_tour.sh (runs/real-tour/tuned);
`--tiny` uses a tiny random checkpoint trained for two steps instead (gibberish, but no tour needed).

    .venv/bin/python scripts/chat_screenshot.py [--checkpoint DIR | --tiny] [OUT.png]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser import CHROMIUM_ARGS, chromium_path  # noqa: E402
from tests.serve_fixtures import ServeProcess, train_tiny_checkpoint  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", type=Path, default=ROOT / "docs" / "chat-page.png")
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "runs" / "real-tour" / "tuned")
    parser.add_argument("--tiny", action="store_true", help="a tiny random checkpoint (no tour needed)")
    args = parser.parse_args()
    out = args.out
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        if args.tiny:
            checkpoint = train_tiny_checkpoint(Path(folder)).path
        elif not args.checkpoint.is_dir():
            raise SystemExit(f"{args.checkpoint}: no checkpoint (run scripts/real_model_tour.sh, or pass --tiny)")
        else:
            checkpoint = args.checkpoint
        with ServeProcess(checkpoint, "--default-max-tokens", "160", "--flags-file", Path(folder) / "flags.jsonl"
                          ) as server, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1000, "height": 720})
            page.set_default_timeout(600_000)  # a real model on a laptop CPU takes a while to answer
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
