"""The Markdown of the repository (README.md, docs/, bench/README.md...), in process: every
relative link names a file that exists, and every `#anchor` a heading of its target, as
GitHub makes anchors. The documentation is split across pages that link into each other;
a heading renamed or a section moved must not leave a link behind."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Not the project's pages: installed packages, data directories, caches.
SKIPPED_DIRS = {"var", "node_modules", "__pycache__", "build", "dist"}

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target "title") and ![alt](target); the text may hold one level of brackets.
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"  # the text
    r"\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)"  # (target "title")
)
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def prose(text: str) -> Iterator[str]:
    """The lines outside fenced code blocks: a `#` in a shell example is no heading."""
    fence: str | None = None
    for line in text.splitlines():
        opened = FENCE.match(line)
        if fence is None and opened:
            fence = opened.group(1)[0] * 3
        elif fence is not None:
            if line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
                fence = None
        else:
            yield line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, links reduced to their words, lowercase,
    punctuation dropped (letters, digits, `_`, `-` and spaces stay), spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a page has: one per heading, a repeated one suffixed -1, -2..."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose(text):
        found.update(HTML_ANCHOR.findall(line))
        heading = HEADING.match(line)
        if heading is None:
            continue
        base = slug(heading.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> Iterator[str]:
    """Every link target, but those inside code (a `[x](y)` quoted as code is no link)."""
    for line in (CODE_SPAN.sub("code", line) for line in prose(text)):
        yield from INLINE_LINK.findall(line)
        reference = REFERENCE.match(line)
        if reference:
            yield reference.group(1)


def pages(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and d not in SKIPPED_DIRS and not d.endswith(".egg-info")
        )
        yield from (Path(folder) / name for name in sorted(files) if name.endswith(".md"))


def broken(root: Path) -> list[str]:
    """Each relative link of the Markdown under root whose file or anchor is missing, as
    `page: target (why)`."""
    problems: list[str] = []
    for page in pages(root):
        for target in links(page.read_text(encoding="utf-8")):
            if not target or EXTERNAL.match(target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(root)}: {target}"
            if not file.exists():
                problems.append(f"{where} (no such file)")
            elif (
                anchor
                and file.suffix == ".md"
                and anchor not in anchors(file.read_text(encoding="utf-8"))
            ):
                problems.append(f"{where} (no such heading in {file.name})")
    return problems


def test_every_relative_link_and_anchor_of_the_repositorys_markdown_resolves() -> None:
    checked = [page.relative_to(ROOT).as_posix() for page in pages(ROOT)]
    assert "README.md" in checked
    assert "bench/README.md" in checked
    assert any(page.startswith("docs/") for page in checked)
    assert broken(ROOT) == []


def test_anchors_are_made_as_github_makes_them() -> None:
    page = "\n".join(
        [
            "# endcontact",
            "## Health, readiness, metrics",
            "### Celery's own tools",
            "## `endcontact run` and the [API](api.md)",
            "## Events: history and the change feed",
            "## Notes",
            "## Notes",
            "```sh",
            "# a shell comment, not a heading",
            "```",
        ]
    )
    assert anchors(page) == {
        "endcontact",
        "health-readiness-metrics",
        "celerys-own-tools",
        "endcontact-run-and-the-api",
        "events-history-and-the-change-feed",
        "notes",
        "notes-1",
    }


def test_a_missing_file_or_heading_is_reported_and_code_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "api.md").write_text("# The API\n\n## The contract in full\n")
    (tmp_path / "README.md").write_text(
        "See [the contract](docs/api.md#the-contract-in-full) and [here](#see).\n"
        "# See\n"
        "[gone](docs/settings.md), [moved](docs/api.md#using-the-api), ![a](docs/a.png)\n"
        "`[in code](nowhere.md)` and [the web](https://example.com/x.md#y)\n"
        "```md\n[in a block](nowhere.md)\n```\n"
        "  ~~~\n  [indented block](nowhere.md)\n  ~~~\n"
        "[ref]: docs/api.md#nope\n"
    )
    assert broken(tmp_path) == [
        "README.md: docs/settings.md (no such file)",
        "README.md: docs/api.md#using-the-api (no such heading in api.md)",
        "README.md: docs/a.png (no such file)",
        "README.md: docs/api.md#nope (no such heading in api.md)",
    ]
