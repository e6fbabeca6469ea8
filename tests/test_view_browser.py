"""`alpaca-data view` in a real headless Chromium, against the real CLI server: click through every view (datasets
and lineage, search, a facet, a record, why dropped, diff, pictures with a verb clicked in the sunburst, eval),
check what each shows against the store, that the page asked nothing of any other origin and broke no rule of its
Content-Security-Policy, and look at a screenshot of the sunburst (it must be a coloured picture, not a blank)."""
from __future__ import annotations

import gzip
import io
import json
import re
from pathlib import Path

from playwright.sync_api import expect

from alpaca_data.store import Store
from tests.browser import browser  # noqa: F401  (the module-wide Chromium fixture)
from tests.conftest import NEFT_GZ, TEST_DATA
from tests.test_view import ViewServer, snapshot

WAIT_MS = 60_000  # two shared cores: the spaCy parse of the pictures view takes a few seconds


def build_store(root: Path) -> Store:
    from alpaca_data.eval.annotations import annotation_record, commit_rows
    from alpaca_data.filters.revision import filter_revision

    store = Store.open(root)
    records = [{**r, "source": "gsm8k"} for r in json.loads((TEST_DATA / "gsm8k_train_alpaca_300.json").read_text())]
    for row in json.loads((TEST_DATA / "gpteacher_roleplay_600.json").read_text())[:300]:
        records.append({"instruction": row["instruction"], "input": row["input"], "output": row["response"],
                        "source": "roleplay"})
    store.commit("mix", records, message="GSM8K and roleplay samples")
    filter_revision(store, "mix@main", dataset="mix-clean", progress=False)  # rules, then ROUGE-L novelty
    judged = json.loads(gzip.open(NEFT_GZ).read())[:60]
    commit_rows(store, "neft", [annotation_record(
        instruction=r["instruction"], output_1=r["output_1"], generator_1=r["generator_1"], output_2=r["output_2"],
        generator_2=r["generator_2"], annotator=r["annotator"], preference=r["preference"],
        category="even" if i % 2 == 0 else "odd") for i, r in enumerate(judged)], message="60 GPT-4 judgments",
        recipe={"command": "eval import"})
    return store


def test_click_through_every_view(browser, tmp_path: Path):  # noqa: F811
    from matplotlib.image import imread

    store = build_store(tmp_path / "store")
    before = snapshot(store.root)
    records = store.read_records("mix@main")
    server = ViewServer(store.root)

    def full(dataset: str) -> str:  # the revision picker lists NAME@<full id>
        return f"{dataset}@{store.resolve(dataset + '@main').id}"

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requests, problems = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        # datasets: the filtered revision's lineage and stats
        page.goto(server.url + "#view=datasets&rev=mix-clean@main")
        expect(page.locator("#lineage li")).to_have_count(2, timeout=WAIT_MS)
        expect(page.locator("#lineage li").first).to_contain_text("mix@")
        expect(page.locator("#revision-detail")).to_contain_text("rouge")

        # records: search three words of one record, open it: the whole text, whitespace kept
        page.locator("#rev").select_option(full("mix"))
        page.locator("#tabs button[data-view=records]").click()
        expect(page.locator("#records-table tbody tr")).to_have_count(50, timeout=WAIT_MS)
        target = records[123]
        words = " ".join(target["instruction"].split()[:3])
        page.locator("#q").fill(words)
        page.locator("#search-form button[type=submit]").click()
        expect(page.locator("#records-summary")).to_contain_text("contain every word", timeout=WAIT_MS)
        page.locator("#records-table tbody tr[data-pos='123']").click()
        expect(page.locator("#record-detail [data-field=output] .text")).to_have_text(target["output"], timeout=WAIT_MS)
        assert page.locator("#record-detail [data-field=output] .text").text_content() == target["output"]

        # a facet: only records with an input
        page.locator("#q").fill("")
        page.locator("#search-form button[type=submit]").click()
        page.locator(".facet[data-facet=has_input] button[data-value=true]").click()
        with_input = sum(1 for r in records if r["input"])
        expect(page.locator("#records-summary")).to_contain_text(f"{with_input} records", timeout=WAIT_MS)

        # why dropped: each rejection beside the record it collided with
        page.locator("#rev").select_option(full("mix-clean"))
        page.locator("#tabs button[data-view=dropped]").click()
        expect(page.locator("#reasons button").first).to_be_visible(timeout=WAIT_MS)
        rouge = page.locator("#reasons button[data-reason=rouge_similar]")
        if rouge.count():
            rouge.click()
            expect(page.locator("#rejections .pair .kept h4").first).to_contain_text("kept", timeout=WAIT_MS)
            expect(page.locator("#rejections .pair .dropped .badge").nth(1)).to_contain_text("ROUGE-L")
        else:  # the rules alone dropped records: shown with no collision
            page.locator("#reasons button[data-reason]").first.click()
            expect(page.locator("#rejections .pair").first).to_be_visible(timeout=WAIT_MS)

        # diff: parent -> filtered, the removed records
        page.locator("#tabs button[data-view=diff]").click()
        removed = store.resolve("mix@main").record_count - store.resolve("mix-clean@main").record_count
        expect(page.locator("#diff-kinds button[data-kind=removed]")).to_contain_text(str(removed), timeout=WAIT_MS)
        page.locator("#diff-kinds button[data-kind=removed]").click()
        expect(page.locator("#diff-info")).to_contain_text(f"of {removed} removed", timeout=WAIT_MS)

        # pictures: histograms, then the sunburst; clicking a verb lists its records
        page.locator("#tabs button[data-view=pictures]").click()
        expect(page.locator("#histograms svg")).to_have_count(3, timeout=WAIT_MS)
        wedge = page.locator("#sunburst-svg path.verb").first
        expect(wedge).to_be_visible(timeout=WAIT_MS)
        shot = page.locator("#sunburst-svg").screenshot(path=tmp_path / "sunburst.png")
        pixels = imread(io.BytesIO(shot))[:, :, :3]
        colours = {tuple(p) for p in (pixels.reshape(-1, 3) * 255).astype(int)[::7].tolist()}
        not_white = (pixels.min(axis=2) < 0.9).mean()
        assert len(colours) > 20 and not_white > 0.3, (len(colours), not_white)
        wedge.hover()
        expect(page.locator("#sunburst-info")).to_contain_text("instructions")
        verb = wedge.get_attribute("data-verb")
        count = int(re.search(r": ([\d,]+) instructions", wedge.locator("title").text_content()).group(1).replace(",", ""))
        wedge.click()
        expect(page.locator("#records-summary")).to_contain_text(f"{count} records", timeout=WAIT_MS)
        expect(page.locator("#active-filters")).to_contain_text(f"verb: {verb}")
        first_line = page.locator("#records-table tbody tr td:nth-child(2)").first.text_content()
        assert verb in first_line.lower()

        # eval: the report's figures, and the items filtered by winner
        page.locator("#rev").select_option(full("neft"))
        page.locator("#tabs button[data-view=eval]").click()
        expect(page.locator("#eval-figures")).to_contain_text("win rate", timeout=WAIT_MS)
        page.locator("#winner").select_option("output_2")
        expect(page.locator("#eval-table tbody tr").first).to_have_attribute("data-winner", "output_2",
                                                                             timeout=WAIT_MS)
        assert set(page.locator("#eval-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.winner)")) \
            == {"output_2"}
        page.wait_for_function("() => { const img = document.querySelector('img.eval-figure');"
                               " return img && img.complete && img.naturalWidth > 300; }", timeout=WAIT_MS)
        page.screenshot(path=tmp_path / "eval.png")
    finally:
        context.close()
        code = server.stop()
    assert code == 0, "".join(server.errors)
    assert not problems, problems  # no CSP violation, no script error
    assert requests and all(url.startswith(server.url) for url in requests), requests
    assert snapshot(store.root) == before
