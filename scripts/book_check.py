"""Build the book and look at every page in a real browser (headless Chromium).

``make book-check`` runs this: ``jupyter-book build`` (execution off: the book renders the executed
notebooks), then every page of ``_build/html`` is opened at 1400 px in headless Chromium (Debian's
``chromium`` package), driven through the Chrome DevTools Protocol with ``websocket-client``, and
checked for what a reader would see as a defect:

* raw LaTeX: ``$$``, ``\\begin{``, ``\\(``, ``\\[`` or inline ``$...$`` math left in the visible text
  (code excluded);
* horizontal overflow at 1400 px: an element of the main article column that sticks out of it, or
  a box in it whose content is wider than the box (it scrolls sideways); each one is named;
* console errors: uncaught exceptions, ``console.error`` and failed loads (a CDN the offline book
  cannot reach shows up here);
* the text ``NaN`` in a notebook output or as a table cell (a missing value; prose may name NaN);
* absolute paths (``/work/``, ``/home/``, ``/tmp/``) in the page or in its downloadable notebook;
* the CLI advice ``skipped (use --force`` in a notebook's output.

Screenshots of a few pages (``--shots``) at 1400 px and at 390 px (a phone) go to
``_build/book-check/``.  One line per problem, ``PAGE: what``; the exit status is 1 when there is
one.  ``--no-build`` checks the existing ``_build/html``; ``--repository-url URL`` builds with that
repository URL (the launch and repository buttons) into ``_build/book-check/with-url`` instead.
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.server
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ("book/intro", "book/method", "book/tutorial", "book/study/results_pixel", "book/study_results",
         "book/reproducing", "results/cpu/synthetic/pspnet-aaf-s0/train")
WIDE, NARROW = 1400, 390
ABSOLUTE = re.compile(r"(?<![\w.:/-])/(?:work|home|tmp)/[^\s\"'<>]*")
RAW_LATEX = re.compile(r"\$\$|\\begin\{|\\\(|\\\[")
# inline math left as text: "$k \in \{3, 5, 7\}$", "$k = 3$" (a TeX command, sub/superscript or = inside $...$)
RAW_INLINE = re.compile(r"\$(?=\S)[^$\n]{0,80}?[\\_^={][^$\n]{0,80}?(?<=\S)\$")

# What the page shows, measured in the page: its visible text (code inputs apart), raw-LaTeX
# candidates, NaN, the article column and what overflows it.
_PAGE_JS = r"""
(() => {
  const col = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const colRect = col.getBoundingClientRect();
  const hidden = el => { const s = getComputedStyle(el); return s.display === 'none' || s.visibility === 'hidden'; };
  const skip = el => el.closest('script, style, noscript, mjx-container, .MathJax, template');
  const isCode = el => el.closest('pre, code, .cell_input, .highlight');
  let prose = [], all = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || skip(el) || !el.getClientRects().length || hidden(el)) continue;
    const t = n.textContent;
    if (!t.trim()) continue;
    all.push(t);
    if (!isCode(el)) prose.push(t);
  }
  // where a NaN is a missing value: notebook outputs and table cells that hold only it (prose may name NaN)
  const outputs = [...document.querySelectorAll('.cell_output, .output')].map(e => e.innerText)
    .concat([...document.querySelectorAll('td, th')].filter(c => /^\s*NaN\s*$/i.test(c.innerText))
            .map(c => `table cell NaN in row "${(c.closest('tr').innerText || '').replace(/\s+/g, ' ').slice(0, 60)}"`))
    .join('\n');
  const name = el => {
    let s = el.tagName.toLowerCase();
    if (el.id) s += '#' + el.id;
    const cls = [...el.classList].slice(0, 3);
    if (cls.length) s += '.' + cls.join('.');
    const text = (el.innerText || el.getAttribute('alt') || '').trim().replace(/\s+/g, ' ').slice(0, 50);
    return text ? `${s} "${text}"` : s;
  };
  const scrolls = el => ['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(el).overflowX);
  const overflow = [], code = [];
  for (const el of col.querySelectorAll('*')) {
    if (skip(el) || el.closest('.math')) continue;   // inline math boxes overhang by a pixel or two
    if (!el.getClientRects().length) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0) continue;
    // inside a box that clips or scrolls: measured on that box instead
    let clipped = false;
    for (let a = el.parentElement; a && a !== col; a = a.parentElement) if (scrolls(a)) { clipped = true; break; }
    if (clipped) continue;
    if (r.right > colRect.right + 1 || r.left < colRect.left - 1) {
      overflow.push(`${name(el)} sticks out of the column (${Math.round(r.width)} px wide, column ${Math.round(colRect.width)} px)`);
    } else if (scrolls(el) && el.scrollWidth > el.clientWidth + 1 && el.clientHeight > 0) {
      const line = `${name(el)} is wider than the column: ${el.scrollWidth} px of content in ${el.clientWidth} px (scrolls sideways)`;
      (el.tagName.toLowerCase() === 'pre' ? code : overflow).push(line);
    }
  }
  const pageWide = document.documentElement.scrollWidth > window.innerWidth + 1;
  return JSON.stringify({prose: prose.join('\n'), text: all.join('\n'), outputs, overflow, code,
                         pageWide, pageWidth: document.documentElement.scrollWidth,
                         column: Math.round(colRect.width), hasArticle: !!document.querySelector('article.bd-article'),
                         hrefs: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))});
})()
"""


class Browser:
    """Headless Chromium over the DevTools Protocol: one tab, one websocket."""

    def __init__(self, executable: str):
        import websocket  # websocket-client (a dependency of jupyter_server; in the test extras)

        self.profile = tempfile.mkdtemp(prefix="book-check-chromium-")
        self.proc = subprocess.Popen(
            [executable, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-dev-shm-usage", "--hide-scrollbars", f"--window-size={WIDE},900", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        for _ in range(300):
            if port_file.is_file() and port_file.read_text().strip():
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"{executable} exited with status {self.proc.returncode}")
            time.sleep(0.1)
        else:
            raise RuntimeError(f"{executable} did not open its DevTools port within 30 s")
        port = int(port_file.read_text().split()[0])
        import urllib.request

        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params) -> dict:
        """Send one command and wait for its answer (events that arrive meanwhile are kept)."""
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, name: str, timeout: float) -> bool:
        """Wait for the event ``name`` (True) or ``timeout`` seconds (False)."""
        end = time.time() + timeout
        while time.time() < end:
            if any(e["method"] == name for e in self.events):
                return True
            self.ws.settimeout(max(0.05, end - time.time()))
            try:
                self.events.append(json.loads(self.ws.recv()))
            except Exception:  # noqa: BLE001 - a timeout of the socket: look again
                pass
            finally:
                self.ws.settimeout(60)
        return False

    def size(self, width: int, height: int = 900, mobile: bool = False) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=mobile)

    def open(self, url: str) -> None:
        """Load ``url`` and wait for it and for MathJax's typesetting."""
        self.events = []
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired", 30)
        self.evaluate("(window.MathJax && MathJax.startup && MathJax.startup.promise) ? "
                      "MathJax.startup.promise.then(() => true) : true", await_promise=True)
        time.sleep(0.3)

    def evaluate(self, expression: str, await_promise: bool = False):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=await_promise)
        if "exceptionDetails" in r:
            raise RuntimeError(f"page script failed: {r['exceptionDetails'].get('text')}")
        return r.get("result", {}).get("value")

    def console_errors(self) -> list[str]:
        """The uncaught exceptions, console.error calls and failed loads since the last :meth:`open`."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append((d.get("exception", {}).get("description") or d.get("text", "")).splitlines()[0])
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") == "error":
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif e["method"] == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(f"{p['entry'].get('text', '')} {p['entry'].get('url', '')}".strip())
        return out

    def screenshot(self, path: Path, width: int, mobile: bool = False, max_height: int = 6000) -> None:
        """The page at ``width`` px, as tall as it is (up to ``max_height``), into ``path`` (PNG)."""
        height = min(max_height, int(self.evaluate("document.documentElement.scrollHeight") or 900))
        self.size(width, height, mobile)
        time.sleep(0.5)
        shot = self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A quiet local web server of ``directory`` (as the book is served), on a free port."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def pages(html: Path) -> list[str]:
    """The book's pages under ``html`` (``book/intro`` ...), without Sphinx's index and search pages."""
    out = []
    for f in sorted(html.rglob("*.html")):
        rel = f.relative_to(html)
        if rel.parts[0].startswith("_") or rel.name in ("genindex.html", "search.html", "index.html"):
            continue
        out.append(str(rel.with_suffix("")))
    return out


def text_problems(info: dict) -> list[str]:
    """The problems found in what :data:`_PAGE_JS` measured (a page's visible text and layout)."""
    problems = []
    for m in sorted(set(RAW_LATEX.findall(info["prose"])) | set(RAW_INLINE.findall(info["prose"]))):
        i = info["prose"].find(m)
        problems.append(f"raw LaTeX {m!r} in the text: ...{_around(info['prose'], i)}...")
    nan = re.search(r"\bNaN\b", info["outputs"])
    if nan:
        problems.append(f"'NaN' in an output or table: ...{_around(info['outputs'], nan.start())}...")
    for path in sorted(set(ABSOLUTE.findall(info["text"] + "\n" + "\n".join(info["hrefs"]))))[:5]:
        problems.append(f"absolute path shown: {path}")
    if "skipped (use --force" in info["text"]:
        problems.append("an output says 'skipped (use --force ...)': CLI advice in a notebook")
    for line in info["overflow"][:8]:
        problems.append(f"overflow at {WIDE} px: {line}")
    if len(info["overflow"]) > 8:
        problems.append(f"overflow at {WIDE} px: ... and {len(info['overflow']) - 8} more elements")
    if info["pageWide"]:
        problems.append(f"the page is {info['pageWidth']} px wide at {WIDE} px (scrolls sideways)")
    return problems


def _around(text: str, i: int, n: int = 40) -> str:
    return " ".join(text[max(0, i - n): i + n].split())


def notebook_problems(html: Path, page: str, hrefs: list[str]) -> list[str]:
    """Absolute paths in the notebook the page offers for download (``_sources/<page>.ipynb``)."""
    source = html / "_sources" / f"{page}.ipynb"
    if not source.is_file() or not any(h.endswith(f"_sources/{page}.ipynb") for h in hrefs):
        return []
    found = sorted(set(ABSOLUTE.findall(source.read_text())))
    return [f"absolute path in the downloadable notebook: {p}" for p in found[:5]]


def build(out: Path | None, config: Path | None) -> float:
    """``jupyter-book build`` (execution off, as ``_config.yml`` says); returns the seconds it took."""
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(ROOT), "--quiet"]
    if out is not None:
        cmd += ["--path-output", str(out)]
    if config is not None:
        cmd += ["--config", str(config)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"book-check: jupyter-book build failed:\n{(r.stdout + r.stderr)[-4000:]}")
    return time.perf_counter() - t0


def check(html: Path, shots_dir: Path, shots: tuple[str, ...], executable: str) -> tuple[list[str], list[str]]:
    """Open every page of ``html`` in Chromium; one ``PAGE: problem`` line per problem found, and
    notes (``PAGE: note``: a code block wider than the column scrolls sideways, as code does)."""
    server, base = serve(html)
    browser = Browser(executable)
    lines, notes = [], []
    shots_dir.mkdir(parents=True, exist_ok=True)
    try:
        for page in pages(html):
            browser.size(WIDE)
            browser.open(f"{base}/{page}.html")
            info = json.loads(browser.evaluate(_PAGE_JS))
            problems = [f"console error: {e}" for e in dict.fromkeys(browser.console_errors())]
            problems += text_problems(info) + notebook_problems(html, page, info["hrefs"])
            lines += [f"{page}: {p}" for p in problems]
            notes += [f"{page}: code block {c}" for c in info["code"]]
            print(f"  {page}: {'ok' if not problems else f'{len(problems)} problem(s)'}", flush=True)
            if page in shots or "all" in shots:
                name = page.replace("/", "_")
                browser.screenshot(shots_dir / f"{name}-{WIDE}.png", WIDE)
                browser.size(NARROW, 844, mobile=True)
                browser.open(f"{base}/{page}.html")
                browser.screenshot(shots_dir / f"{name}-{NARROW}.png", NARROW, mobile=True)
    finally:
        browser.close()
        server.shutdown()
    return lines, notes


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("book-check: no Chromium found; install Debian's package: apt-get install -y chromium")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-build", action="store_true", help="check the existing build (--html)")
    ap.add_argument("--html", type=Path, default=ROOT / "_build" / "html", help="the built book (default _build/html)")
    ap.add_argument("--repository-url", help="build with this repository.url (into _build/book-check/with-url)")
    ap.add_argument("--shots", nargs="*", default=list(SHOTS), help="pages to screenshot ('all' for every page)")
    ap.add_argument("--out", type=Path, default=ROOT / "_build" / "book-check", help="where the screenshots go")
    args = ap.parse_args(argv)
    executable = find_chromium()
    t0 = time.perf_counter()
    html = args.html
    if args.repository_url:
        import yaml

        config = yaml.safe_load((ROOT / "_config.yml").read_text())
        config.setdefault("repository", {})["url"] = args.repository_url
        local = config.get("sphinx", {}).get("local_extensions") or {}
        for name, path in local.items():   # resolved against the config file's folder
            local[name] = str(ROOT / path)
        out = args.out / "with-url"
        out.mkdir(parents=True, exist_ok=True)
        (out / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        took = build(out, out / "_config.yml")
        html = out / "_build" / "html"
        print(f"book-check: built with repository.url = {args.repository_url} in {took:.0f} s")
    elif not args.no_build:
        took = build(None, None)
        print(f"book-check: built _build/html in {took:.0f} s")
    t1 = time.perf_counter()
    lines, notes = check(html, args.out, tuple(args.shots), executable)
    t2 = time.perf_counter()
    print(f"book-check: {len(pages(html))} pages checked in {t2 - t1:.0f} s (total {t2 - t0:.0f} s); "
          f"screenshots in {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    if notes:
        print(f"book-check: {len(notes)} note(s), not failures:")
        for line in notes:
            print(f"  {line}")
    for line in lines:
        print(line)
    print(f"book-check: {len(lines)} problem(s)" if lines else "book-check: no problems")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
