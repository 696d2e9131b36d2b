"""The book: its notebooks carry no errors or warnings, and Jupyter Book 1 builds it with zero warnings.

Also the book's configuration: the repository buttons and the clone URL follow one setting
(``repository.url``), each script once on a page, the executed copies show their parameters and
keep no absolute paths or widget state.  ``make book-check`` (scripts/book_check.py) looks at the
built pages in a browser.
"""

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
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import aafbook  # noqa: E402  (the book's Sphinx hooks, a local extension)


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
        # no script from a CDN (MathJax is the book's own copy; no widget manager), each script once
        assert not re.search(r'<script[^>]*src="(https?:)?//', text, re.IGNORECASE), page
        assert text.count("const THEBE_JS_URL") <= 1, page
        if 'class="math' in text:
            assert "_static/mathjax/tex-svg-full.js" in text, page


@pytest.mark.parametrize("path", [ROOT / f"{f}.ipynb" for f in _toc_files() if (ROOT / f"{f}.ipynb").is_file()],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_book_copies_show_their_parameters_and_no_machine_paths(path):
    """Made by aafcore.launch.execute (or cleaned by ``python -m aafcore.launch --clean``): the
    template's documented parameters cell is on the page with the values the copy ran with; no
    papermill cell, no widget state, no absolute path."""
    nb = nbformat.read(path, as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert not any("injected-parameters" in t for t in tags), "papermill's injected cell: run the migration"
    params = [t for t in tags if "parameters" in t]
    assert len(params) <= 1 and not any("remove-cell" in t for t in params)
    assert "widgets" not in nb.metadata
    text = nbformat.writes(nb)
    assert not re.search(r"/(work|home|tmp)/", text), re.search(r".{60}/(work|home|tmp)/.{40}", text)
    pm = nb.metadata.get("papermill", {})
    assert pm.get("output_path") in (None, str(path.relative_to(ROOT)))


def test_repository_buttons_follow_the_one_url():
    off = aafbook.repository_options({"repository_url": "", "launch_buttons": {"binderhub_url": "x"}})
    assert not off["use_repository_button"] and not off["use_issues_button"] and not off["use_edit_page_button"]
    assert not any(off["launch_buttons"][k] for k in ("binderhub_url", "colab_url", "jupyterhub_url", "thebe"))
    # jupyter-book's own default URL (no repository in _config.yml) is not this book's
    assert not aafbook.repository_options({"repository_url": aafbook.JUPYTER_BOOK_DEFAULT})["use_repository_button"]
    on = aafbook.repository_options({"repository_url": "https://github.com/someone/aaf.git/"})
    assert on["repository_url"] == "https://github.com/someone/aaf"
    assert on["use_repository_button"] and on["use_issues_button"]
    assert on["launch_buttons"]["binderhub_url"] == aafbook.BINDER and on["launch_buttons"]["colab_url"] == aafbook.COLAB
    gitlab = aafbook.repository_options({"repository_url": "https://gitlab.com/someone/aaf"})
    assert gitlab["launch_buttons"]["binderhub_url"] and not gitlab["launch_buttons"]["colab_url"]   # Colab: GitHub only
    with pytest.raises(ValueError, match="OWNER/REPO"):
        aafbook.repository_options({"repository_url": "https://example.org/aaf"})


@pytest.mark.parametrize("url", ["", "https://github.com/someone/aaf"])
def test_the_config_gives_the_buttons_and_the_clone_url(url):
    """_config.yml through jupyter-book's own translation, then the book's hook, both ways."""
    from jupyter_book.config import get_final_config

    user = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert "aafbook" in user["sphinx"]["local_extensions"]
    assert user["repository"]["url"] in ("", None) or aafbook.repository_url({"repository_url": user["repository"]["url"]})
    user["repository"]["url"] = url
    config, _ = get_final_config(user_yaml=user, sourcedir=ROOT, cli_config={"latex_individualpages": False})
    options = aafbook.repository_options(config["html_theme_options"])
    assert options["use_repository_button"] == bool(url) and bool(options["launch_buttons"]["binderhub_url"]) == bool(url)
    assert config["nb_ipywidgets_js"] == {}   # no widget manager from a CDN

    class App:   # what the source-read hook reads
        class config:
            html_theme_options = options

    source = [(ROOT / "book" / "reproducing.md").read_text()]
    assert "{{ repository_url }}" in source[0] and "{{ repository_note }}" in source[0]
    aafbook._source_read(App, "book/reproducing", source)
    assert "{{" not in source[0]
    if url:
        assert f"git clone {url} " in source[0] and f"[{url}]({url})" in source[0]
    else:
        assert f"git clone {aafbook.PLACEHOLDER} " in source[0] and "`repository.url`" in source[0]


def test_each_script_is_on_a_page_once():
    from sphinx.builders.html._assets import _JavaScript

    thebe = 'const THEBE_JS_URL = "x"'
    scripts = [_JavaScript("a.js"), _JavaScript(None, body=thebe), _JavaScript("", body=thebe, priority=500),
               _JavaScript("a.js", priority=800), _JavaScript("b.js", **{"async": "async"})]
    assert [(s.filename, s.attributes) for s in aafbook.unique_scripts(scripts)] == [
        ("a.js", {}), (None, {"body": thebe}), ("b.js", {"async": "async"})]


def test_a_finished_run_says_so_without_command_line_advice_in_a_notebook(monkeypatch):
    from aafcore import runs

    result = {"provenance": {"started": "2026-11-25T12:12:49+0000", "device": "cpu"}}
    assert not runs.in_notebook()
    assert "use --force" in runs.skip_message("results/x", result, "run")
    monkeypatch.setattr(runs, "in_notebook", lambda: True)
    for what in ("run", "evaluation"):
        line = runs.skip_message("results/x", result, what)
        assert "--force" not in line and "skipped" not in line and "2026-11-25" in line and "stored" in line


def test_the_browser_check_flags_raw_math_nan_and_machine_paths_in_what_a_page_shows():
    """scripts/book_check.py's text rules, on text as the browser measured it: unrendered display or
    inline math, NaN in an output and an absolute path are problems; prices and rendered math are not."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("book_check", ROOT / "scripts" / "book_check.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    page = {"prose": "the largest weight is at $k = 3$ and $$x$$; it costs $5 and $6", "outputs": "0.1 NaN 0.2",
            "text": "see /work/main/results", "hrefs": [], "overflow": [], "pageWide": False}
    found = " | ".join(check.text_problems(page))
    assert "'$k = 3$'" in found and "'$$'" in found and "NaN" in found and "/work/main/results" in found
    assert "'$5" not in found and "'$6" not in found      # a price is not math
    clean = {**page, "prose": "the largest weight is at k = 3", "outputs": "0.1 – 0.2", "text": "see results/"}
    assert check.text_problems(clean) == []
