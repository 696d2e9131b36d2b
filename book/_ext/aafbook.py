"""The book's Sphinx hooks (``sphinx.local_extensions`` in ``_config.yml``).

* The repository: one setting, ``repository.url`` in ``_config.yml``.  When it is set, the pages
  get the repository and issues buttons and the notebook pages Binder and Colab launch buttons
  (Colab only for a GitHub repository); when it is empty, none of them, and nothing points at a
  repository that is not there (:func:`repository_options`).  ``{{ repository_url }}`` and
  ``{{ repository_note }}`` in a page's source become the clone URL and a sentence about it
  (:func:`repository_text`), also inside code blocks.
* One search box (:func:`layout_options`).
* Every script tag once: a few extensions register their inline scripts twice, and the second
  ``const THEBE_JS_URL`` stops the page's script with a SyntaxError (:func:`unique_scripts`).
"""

from __future__ import annotations

import re

BINDER = "https://mybinder.org"
COLAB = "https://colab.research.google.com"
HOSTS = ("github.com", "gitlab.com", "bitbucket.org")
# jupyter-book's default when _config.yml names no repository: not this book's
JUPYTER_BOOK_DEFAULT = "https://github.com/executablebooks/jupyter-book"
PLACEHOLDER = "<repository-url>"


def repository_url(theme_options: dict) -> str:
    """The book's repository URL from the theme options jupyter-book made of ``repository.url``
    (``""`` when unset, or when it is jupyter-book's own default)."""
    url = str(theme_options.get("repository_url") or "").strip().rstrip("/")
    if url.endswith(".git"):
        url = url[:-4]
    return "" if url == JUPYTER_BOOK_DEFAULT else url


def repository_options(theme_options: dict) -> dict:
    """``theme_options`` with the repository and launch buttons on when the repository URL is set
    (and on a host the theme knows: GitHub, GitLab, Bitbucket), off otherwise; a new dict.

    >>> repository_options({"repository_url": ""})["use_repository_button"]
    False
    >>> o = repository_options({"repository_url": "https://github.com/me/aaf"})
    >>> o["use_issues_button"], o["launch_buttons"]["binderhub_url"], o["launch_buttons"]["colab_url"]
    (True, 'https://mybinder.org', 'https://colab.research.google.com')
    """
    url = repository_url(theme_options)
    host = re.match(r"https?://(?:www\.)?([^/]+)/[^/]+/[^/]+$", url)
    known = bool(host) and host.group(1) in HOSTS
    if url and not known:
        raise ValueError(f"repository.url {url!r}: the book's buttons need https://<{'|'.join(HOSTS)}>/OWNER/REPO")
    out = {**theme_options, "repository_url": url}
    launch = dict(theme_options.get("launch_buttons") or {})
    launch.update(binderhub_url=BINDER if known else "", colab_url=COLAB if known and host.group(1) == "github.com"
                  else "", jupyterhub_url="", thebe=False)
    launch.setdefault("notebook_interface", "classic")
    out["launch_buttons"] = launch
    out.update(use_repository_button=known, use_issues_button=known and host.group(1) != "bitbucket.org")
    out.setdefault("use_edit_page_button", False)
    if not known:
        out["use_edit_page_button"] = False
    return out


def repository_text(url: str) -> dict[str, str]:
    """What ``{{ repository_url }}`` and ``{{ repository_note }}`` become in a page."""
    if url:
        return {"repository_url": url,
                "repository_note": f"The repository is [{url}]({url}); its issues are the place for questions "
                                   "and problems."}
    return {"repository_url": PLACEHOLDER,
            "repository_note": "This copy of the book was built without a repository address (`repository.url` "
                               "in `_config.yml` is empty), so there is no URL to give: clone or copy the "
                               "project from wherever you got this book. Once the address is set, it appears "
                               "here, and the pages get repository, issues and launch (Binder, Colab) buttons."}


def unique_scripts(scripts: list) -> list:
    """``scripts`` (Sphinx's ``_JavaScript`` entries of a page) with each one once, in order: the
    same file, or the same inline body, twice is dropped, whatever its priority (an inline script's
    file name is ``None`` from one extension and ``""`` from another)."""
    seen, out = set(), []
    for js in scripts:
        attrs = getattr(js, "attributes", {}) or {}
        key = (getattr(js, "filename", js) or "", tuple(sorted((k, str(v)) for k, v in attrs.items() if k != "priority")))
        if key not in seen:
            seen.add(key)
            out.append(js)
    return out


def layout_options(theme_options: dict) -> dict:
    """``theme_options`` with one search box: the sidebar's (the theme also puts one in the top
    bar; on a phone the sidebar's is behind the menu button, as the rest of the navigation)."""
    return {**theme_options, "navbar_persistent": []}


def _config_inited(app, config) -> None:
    config.html_theme_options = layout_options(repository_options(config.html_theme_options))


def _source_read(app, docname, source) -> None:
    if "{{ repository_" not in source[0]:
        return
    for key, value in repository_text(app.config.html_theme_options.get("repository_url", "")).items():
        source[0] = source[0].replace("{{ " + key + " }}", value)


def _page_context(app, pagename, templatename, context, doctree) -> None:
    if "script_files" in context:
        context["script_files"] = unique_scripts(context["script_files"])


def setup(app):
    app.connect("config-inited", _config_inited, priority=100)
    app.connect("source-read", _source_read)
    app.connect("html-page-context", _page_context, priority=1000)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
