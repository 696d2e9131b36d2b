"""The book: its notebooks carry no errors or warnings, and Jupyter Book 1 builds it with zero warnings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from aafcore.reproduce import REPORTS, STUDY_PAGES, book_notebooks

ROOT = Path(__file__).resolve().parent.parent


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc["parts"]:
        files += [c["file"] for c in part["chapters"]]
    return files


def test_every_page_of_the_toc_exists_and_every_result_notebook_is_in_it():
    files = _toc_files()
    for f in files:
        assert (ROOT / f"{f}.md").is_file() or (ROOT / f"{f}.ipynb").is_file(), f
    assert {f"book/{r}" for r in REPORTS} <= set(files)
    assert {f"book/study/{r}" for r in STUDY_PAGES} <= set(files)   # the study's pages: the main results
    assert {"book/intro", "book/method", "book/reproducing", "book/implementation-notes"} <= set(files)


def test_math_renders_with_no_network():
    """MathJax comes from the book itself (vendored from npm), not from a CDN."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    static = [ROOT / d for d in config["html_static_path"]]
    mathjax = [d / config["mathjax_path"] for d in static if (d / config["mathjax_path"]).is_file()]
    assert not config["mathjax_path"].startswith(("http:", "https:", "//")) and mathjax
    assert b"MathJax" in mathjax[0].read_bytes()[:200_000] and mathjax[0].stat().st_size > 1_000_000


@pytest.mark.parametrize("path", book_notebooks(), ids=lambda p: str(p.relative_to(ROOT)))
def test_book_notebooks_have_no_errors_or_warnings(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("aafcore", {}).get("template"), "not an executed copy made by aaf reproduce"
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"cell {i}: {out.get('ename')}: {out.get('evalue')}"
            text = out.get("text", "") if out.get("output_type") == "stream" else ""
            assert "Traceback" not in text and "Warning" not in text, f"cell {i}: {text[:300]}"


@pytest.mark.slow
def test_jupyter_book_builds_without_warnings(tmp_path):
    exe = Path(sys.executable).with_name("jupyter-book")
    r = subprocess.run([str(exe), "build", str(ROOT), "--path-output", str(tmp_path), "--warningiserror",
                        "--keep-going", "--quiet"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    html = tmp_path / "_build" / "html"
    assert (html / "index.html").is_file()
    for f in _toc_files():
        page = html / f"{f}.html"
        assert page.is_file(), page
        text = page.read_text()
        assert "Traceback (most recent call last)" not in text, page
        # MathJax is the book's own copy, never a CDN's (a page with widget output still loads the
        # widget manager from a CDN: the training notebook's progress widget)
        assert not re.search(r'<script[^>]*src="(https?:)?//[^"]*mathjax', text, re.IGNORECASE), page
        if 'class="math' in text:
            assert "_static/mathjax/tex-svg-full.js" in text, page
