"""Open a local HTML file in a real headless Chromium (Debian's ``chromium``, driven by playwright)
and return what a reader would see: the visible text, console messages, page errors, a screenshot.

No browser download: playwright launches the system binary (``CHROMIUM``, or ``$DATAFACTORY_CHROMIUM``).
Requests other than the ``file://`` page itself are counted and blocked, so a report that tried to
reach the network fails its test instead of hanging.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"


def chromium_path() -> str | None:
    """The Chromium binary to drive, or None when there is none (tests skip with that reason)."""
    for candidate in (os.environ.get("DATAFACTORY_CHROMIUM"), CHROMIUM, shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def why_no_browser() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    if chromium_path() is None:
        return "no chromium binary (apt-get install -y chromium; .ci/run installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


@dataclass
class Rendered:
    text: str                                        # document.body.innerText: what is visible
    console: list[tuple[str, str]] = field(default_factory=list)   # (type, text) of every console message
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)              # every URL the page asked for
    scripts: int = 0                                 # <script> elements in the DOM
    dialogs: list[str] = field(default_factory=list)
    title: str = ""

    @property
    def errors(self) -> list[str]:
        return [t for kind, t in self.console if kind in ("error", "warning")] + self.page_errors


def render(path: Path, *, screenshot: Path | None = None, width: int = 1400, full_page: bool = True) -> Rendered:
    """Load ``path`` from disk in headless Chromium; optionally save a full-page PNG screenshot."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError("no chromium binary")
    url = Path(path).resolve().as_uri()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            out = Rendered(text="")

            def on_request(route: Any) -> None:
                out.requests.append(route.request.url)
                if route.request.url == url:
                    route.continue_()
                else:
                    route.abort()

            page.route("**/*", on_request)
            page.on("console", lambda m: out.console.append((m.type, m.text)))
            page.on("pageerror", lambda e: out.page_errors.append(str(e)))

            def on_dialog(d: Any) -> None:
                out.dialogs.append(d.message)
                d.dismiss()

            page.on("dialog", on_dialog)
            page.goto(url, wait_until="load")
            out.text = page.inner_text("body")
            out.title = page.title()
            out.scripts = page.locator("script").count()
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=full_page)
            return out
        finally:
            browser.close()
