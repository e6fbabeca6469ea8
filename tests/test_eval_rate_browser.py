"""`alpaca-data eval rate` in a real headless Chromium: two raters at once, one by clicks and one by keys, with an
undo and a reload, against the real CLI server, each from the link printed for them (it carries their token);
then the stored judgments and `eval report` are checked against what was chosen, and no page or API answer the
raters saw names a model, a dataset, a revision or the key the placements are drawn from."""
from __future__ import annotations

import json
import signal
from pathlib import Path

from playwright.sync_api import Page, expect

from alpaca_data.store import Store
from tests.browser import browser  # noqa: F401  (the session-wide Chromium fixture)
from tests.conftest import run_cli
from tests.test_eval_rate import (
    GENERATORS,
    Outputs,
    RateProcess,
    build_outputs,
    expected_preference,
    rule_choice,
    shown_order,
    stored_judgments,
)

WAIT_MS = 30_000  # two shared cores: allow a slow answer
KEYS = {"left": "1", "right": "2", "tie": "3"}
OTHER = {"left": "right", "right": "left", "tie": "left"}


class Rater:
    """One browser context (its own cookies and storage) with the rating page, and what it was shown."""

    def __init__(self, browser, url: str, outputs: Outputs):  # noqa: F811
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page: Page = self.context.new_page()
        self.outputs = outputs
        self.answers: list = []  # every API response the page received
        self.texts: list[str] = []  # the page's HTML and API answers, read as they come
        self.page.on("response", lambda response: self.answers.append(response))
        self.url = url
        self.expected: dict[str, tuple[int, str]] = {}  # instruction + input -> (preference, order)

    def shown(self) -> dict:
        page = self.page
        return {"id": page.locator("body").get_attribute("data-item"),
                "instruction": page.locator("#instruction").text_content(),
                "input": page.locator("#input").text_content(),
                "left": page.locator("#left").text_content(), "right": page.locator("#right").text_content()}

    def wait_for(self, done: int) -> dict:
        expect(self.page.locator("#progress")).to_have_text(f"{done} / 20", timeout=WAIT_MS)
        expect(self.page.locator("body")).to_have_attribute("data-busy", "0", timeout=WAIT_MS)
        self.collect()
        return self.shown()

    def collect(self) -> None:
        """Read the page and the API answers now (a reload would make the older bodies unreadable)."""
        self.texts.append(self.page.content())
        while self.answers:
            response = self.answers.pop()
            if response.url.startswith(self.url):
                self.texts.append(response.text())

    def remember(self, item: dict, choice: str) -> None:
        self.expected[item["instruction"] + "\0" + item["input"]] = (
            expected_preference(self.outputs, item, choice), shown_order(self.outputs, item))


def test_two_raters_judge_in_chromium_with_clicks_keys_an_undo_and_a_reload(browser, tmp_path: Path):  # noqa: F811
    outputs = build_outputs(tmp_path / "store")
    server = RateProcess(outputs.store_root, *outputs.refs, "--raters", "ann,bob", "--port", "0",
                         "--dataset", "ratings")
    try:
        ann, bob = Rater(browser, server.url, outputs), Rater(browser, server.url, outputs)
        ann.page.goto(server.url)
        ann.page.get_by_role("button", name="ann", exact=True).click()  # the picker lists --raters, but
        expect(ann.page.locator("#status")).to_contain_text("open the link made for ann", timeout=WAIT_MS)
        expect(ann.page.locator("#task")).to_be_hidden()  # without her link (her token) nothing is shown
        ann.collect()
        ann.page.goto(server.links["ann"])  # each rater's own link, as printed at start
        expect(ann.page).to_have_url(f"{server.url}?rater=ann", timeout=WAIT_MS)  # the token leaves the address bar
        bob.page.goto(server.links["bob"])
        ann_item, bob_item = ann.wait_for(0), bob.wait_for(0)
        assert ann.page.locator("#input-box").is_hidden() == (ann_item["input"] == "")

        for step in range(20):  # both raters at once, step by step
            choice = rule_choice(step, ann_item)
            ann.page.locator(f"#choose-{choice}").click()
            ann.remember(ann_item, choice)
            ann_item = ann.wait_for(step + 1)
            if step == 9:  # a reload in the middle continues at the same item, with the same sides
                ann.page.reload()
                assert ann.wait_for(10) == ann_item

            choice = rule_choice(step, bob_item)
            if step == 6:  # a wrong key first, then undo (key U): the undone choice must not be stored
                bob.page.keyboard.press(KEYS[OTHER[choice]])
                bob.wait_for(step + 1)
                expect(bob.page.locator("#undo")).to_be_enabled()
                bob.page.keyboard.press("u")
                assert bob.wait_for(step) == bob_item
            bob.page.keyboard.press(KEYS[choice])
            bob.remember(bob_item, choice)
            bob_item = bob.wait_for(step + 1)
            if step == 11:
                bob.page.screenshot(path=tmp_path / "rate.png")

        for rater in (ann, bob):
            expect(rater.page.locator("#done")).to_be_visible()
            expect(rater.page.locator("#task")).to_be_hidden()
            rater.collect()
        ann.context.close()
        bob.context.close()
    finally:
        code, stdout, stderr = server.stop(signal.SIGTERM)  # stopping commits the journal
    assert code == 0, stderr
    assert (tmp_path / "rate.png").stat().st_size > 10_000

    key = next((outputs.store_root / "runs" / "eval-rate" / "ratings").glob("*.secret")).read_text().strip()
    for text in ann.texts + bob.texts:  # blind: nothing the raters' browsers received names the models
        for secret in [*outputs.secrets, key]:  # nor the key their placements are drawn from
            assert secret not in text
    assert any('"left"' in text for text in bob.texts), "the API answers were read"

    store = Store.open(outputs.store_root)
    manifest = store.resolve("ratings@main")
    assert stdout.strip().splitlines()[-1] == manifest.id
    rows = store.read_records(manifest)
    expected = {**{("ann", key): value for key, value in ann.expected.items()},
                **{("bob", key): value for key, value in bob.expected.items()}}
    assert len(rows) == 40 and stored_judgments(rows, expected) == expected
    assert {row["order"] for row in rows} == {"12", "21"} and {row["preference"] for row in rows} == {0, 1, 2}

    report = run_cli("eval", "report", "ratings@main", "--json", store=outputs.store_root)
    assert report.returncode == 0, report.stderr
    figures = json.loads(report.stdout)
    preferences = [preference for preference, _ in expected.values()]
    assert (figures["wins"], figures["losses"], figures["ties"]) == (preferences.count(2), preferences.count(1),
                                                                    preferences.count(0))
    assert figures["rows"] == 40 and figures["items"] == 20 and figures["annotators"] == ["ann", "bob"]
    assert (figures["baseline"], figures["model"]) == GENERATORS
    assert [link["found"] for link in figures["lineage"]["outputs"]] == [True, True]
    assert figures["lineage"]["annotations"]["command"] == "eval rate"


def test_a_typed_name_is_claimed_by_the_first_browser_only(browser, tmp_path: Path):  # noqa: F811
    outputs = build_outputs(tmp_path / "store")
    server = RateProcess(outputs.store_root, *outputs.refs, "--port", "0", "--dataset", "ratings")  # no --raters
    try:
        first, second = Rater(browser, server.url, outputs), Rater(browser, server.url, outputs)
        for rater in (first, second):  # one after the other: the first claims the name
            rater.page.goto(server.url)
            rater.page.locator("#name-input").fill("Zoë K")
            rater.page.get_by_role("button", name="Start").click()
            if rater is first:
                first.wait_for(0)
        first.page.keyboard.press("3")
        first.wait_for(1)
        expect(second.page.locator("#status")).to_contain_text("taken by another browser", timeout=WAIT_MS)
        expect(second.page.locator("#task")).to_be_hidden()
        first.page.reload()  # the token stays in the first browser
        first.wait_for(1)
        first.context.close()
        second.context.close()
    finally:
        code, _, stderr = server.stop(signal.SIGTERM)
    assert code == 0 and "1 judgments" in stderr, stderr
