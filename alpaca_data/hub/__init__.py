"""Publishing to the Hugging Face Hub: dataset cards, the Hub file layout, push and pull.

    write_hub_layout(store, ref, folder)    the files a push uploads, written into a folder
    push(store, ref, "user/name")           one commit (shards + README.md + alpaca_manifest.json), then tags
    pull("user/name@rev", dataset=...)      download a pinned revision, verify, validate, commit
    card_text(store, ref)                   the dataset card alone
"""
from __future__ import annotations

from alpaca_data.hub.card import CardOptions, render_card
from alpaca_data.hub.layout import HUB_MANIFEST, Layout, build_layout, write_hub_layout
from alpaca_data.hub.pull import PullResult, pull
from alpaca_data.hub.push import PushResult, push, revision_tag

__all__ = [
    "HUB_MANIFEST",
    "CardOptions",
    "Layout",
    "PullResult",
    "PushResult",
    "build_layout",
    "card_text",
    "pull",
    "push",
    "render_card",
    "revision_tag",
    "write_hub_layout",
]


def card_text(store, ref, *, license=None, language=None, pretty_name=None, repo_id=None) -> str:
    """Render the card of a revision exactly as a push would (shards are built in a temporary folder)."""
    import tempfile
    from pathlib import Path

    manifest = store.resolve(ref) if isinstance(ref, str) else ref
    options = CardOptions.make(license=license, language=language, pretty_name=pretty_name, repo_id=repo_id)
    with tempfile.TemporaryDirectory(prefix="alpaca-card-") as tmp:
        return build_layout(store, manifest, Path(tmp), options).card
