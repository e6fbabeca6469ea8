"""Names are checked whole: a trailing newline (where a regex `$` would still match) makes any name invalid."""
from __future__ import annotations

import re

import pytest

from alpaca_data.errors import UserError
from alpaca_data.eval.rating import RATER_NAME
from alpaca_data.hub.card import LANGUAGE_PATTERN, LICENSE_PATTERN
from alpaca_data.hub.remote import REPO_PATTERN, check_repo_id
from alpaca_data.store import Store
from alpaca_data.store.refs import ID_PREFIX, NAME_PATTERN, REVISION_ID, check_tag_name
from alpaca_train.data import _HUB_REF
from tests.conftest import SEEDS
from tests.inprocess_cli import cli_here_fixture  # noqa: F401 (the `cli_here` fixture)

# every pattern that decides whether a name is valid, with a name it accepts
NAME_CHECKS = [(NAME_PATTERN, "v2"), (REVISION_ID, "a" * 64), (ID_PREFIX, "abcd"), (REPO_PATTERN, "user/name"),
               (LANGUAGE_PATTERN, "en"), (LICENSE_PATTERN, "cc-by-4.0"), (RATER_NAME, "ann"),
               (_HUB_REF, "user/name@main")]


@pytest.mark.parametrize(("pattern", "good"), NAME_CHECKS, ids=[p.pattern[:24] for p, _ in NAME_CHECKS])
def test_every_name_pattern_matches_whole_names_only(pattern: re.Pattern, good: str):
    assert pattern.match(good) and pattern.fullmatch(good)
    for bad in (good + "\n", good + "\n\n", "\n" + good, good + "\r"):
        assert not pattern.match(bad) and not pattern.search(bad), repr(bad)


def test_names_ending_in_a_newline_are_refused_and_nothing_is_written(cli_here, store_path):
    assert cli_here("import", SEEDS, "-d", "s").returncode == 0
    tags = store_path / "datasets" / "s" / "refs" / "tags"
    for args, needle in ((("tag", "s@main", "v2\n"), "invalid tag name"),
                         (("import", SEEDS, "-d", "nl\n"), "invalid dataset name")):
        result = cli_here(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not tags.exists() or not any(tags.iterdir())
    assert sorted(p.name for p in (store_path / "datasets").iterdir()) == ["s"]
    # a folder made by hand with such a name is not a dataset of the store
    (store_path / "datasets" / "nl\n").mkdir()
    assert Store.open(store_path).datasets() == ["s"]
    for check in (lambda: check_tag_name("v2\n"), lambda: Store.check_dataset_name("nl\n"),
                  lambda: check_repo_id("user/name\n")):
        with pytest.raises(UserError):
            check()
