"""Check every link of the built book: internal links and anchors must resolve, external ones
are listed (never fetched).

    .venv/bin/python tools/check_links.py [_build/html]

prints the counts, every broken link (exit status 1 if any) and the external links by host.
tests/test_book_links.py runs the same check.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path
from typing import Dict, List, Set
from urllib.parse import unquote, urldefrag, urlparse

from bs4 import BeautifulSoup

# (tag, attribute) pairs that point somewhere
LINK_ATTRS = (("a", "href"), ("link", "href"), ("img", "src"), ("script", "src"), ("source", "src"), ("iframe", "src"))


class Report:
    """What :func:`check` found (a plain class: tests load this script without a package)."""

    def __init__(self) -> None:
        self.pages: List[str] = []
        self.internal = 0  # links to a file of the book (with or without an anchor)
        self.anchors = 0  # of those, links with a #fragment that was checked
        self.broken: List[str] = []  # "page: href (why)"
        self.external: Dict[str, Set[str]] = collections.defaultdict(set)  # url -> pages


def _ids(page: Path, cache: Dict[Path, Set[str]]) -> Set[str]:
    if page not in cache:
        soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
        cache[page] = {t["id"] for t in soup.find_all(id=True)} | {t["name"] for t in soup.find_all("a", attrs={"name": True})}
    return cache[page]


def book_pages(html: Path) -> List[Path]:
    """Every HTML page of the book (the theme's own assets under ``_static`` excluded)."""
    return sorted(p for p in html.rglob("*.html") if "_static" not in p.relative_to(html).parts)


def check(html: Path) -> Report:
    """Check the links of every page of ``html`` (a built Jupyter Book)."""
    html = html.resolve()
    report = Report()
    ids: Dict[Path, Set[str]] = {}
    for page in book_pages(html):
        rel = str(page.relative_to(html))
        report.pages.append(rel)
        soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
        for tag, attr in LINK_ATTRS:
            for el in soup.find_all(tag):
                href = el.get(attr)
                if href is None:
                    continue
                href = href.strip()
                url = urlparse(href)
                if url.scheme in ("http", "https", "mailto", "ftp") or href.startswith("//"):
                    report.external[href].add(rel)
                    continue
                if url.scheme in ("data", "javascript", "blob"):
                    continue
                if url.scheme:
                    report.broken.append(f"{rel}: {href} (unknown scheme)")
                    continue
                path, fragment = urldefrag(href)
                path = urlparse(path).path  # without ?v=digest
                target = page if path == "" else (page.parent / unquote(path)).resolve()
                report.internal += 1
                if html not in target.parents and target != html:
                    report.broken.append(f"{rel}: {href} (leaves the book)")
                    continue
                if target.is_dir():
                    target = target / "index.html"
                if not target.exists():
                    report.broken.append(f"{rel}: {href} (no file {target.relative_to(html)})")
                    continue
                if fragment and target.suffix == ".html":
                    report.anchors += 1
                    if unquote(fragment) not in _ids(target, ids):
                        report.broken.append(f"{rel}: {href} (no id {fragment!r} in {target.relative_to(html)})")
    return report


def main(argv: List[str]) -> int:
    html = Path(argv[0] if argv else "_build/html")
    report = check(html)
    hosts = collections.Counter(urlparse(u).netloc or urlparse(u).scheme for u in report.external)
    print(f"{len(report.pages)} pages, {report.internal} internal links ({report.anchors} with an anchor), "
          f"{len(report.broken)} broken, {len(report.external)} distinct external links (not fetched)")  # fmt: skip
    for line in report.broken:
        print("BROKEN", line)
    for host, n in hosts.most_common():
        print(f"external {host}: {n}")
    for url in sorted(report.external):
        print("  ", url)
    return 1 if report.broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
