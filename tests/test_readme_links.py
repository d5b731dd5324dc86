"""The front page's links lead somewhere: every relative link of README.md names a file of the
repository, and every #anchor a heading of that file (GitHub's slug rule)."""

from __future__ import annotations

import re

from conftest import REPO


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_relative_link_of_the_readme_resolves() -> None:
    text = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [u for u in links if not re.match(r"https?:|mailto:", u)]
    assert len(relative) >= 10  # the headline table alone links every cell
    for url in relative:
        path, _, anchor = url.partition("#")
        target = REPO / path if path else REPO / "README.md"
        assert target.exists(), f"README links to {path}, which does not exist"
        if anchor:
            headings = [slug(m) for m in re.findall(r"^#+ (.+)$", target.read_text(), re.M)]
            assert anchor in headings, f"README links to {url}: no such heading in {path}"
