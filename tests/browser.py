"""Open a Snakemake report in headless Chromium (Debian's `chromium`) and use it as a reader
would: every category and subcategory, every result's view button, recording what was shown."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM_HINT = "install Debian's chromium (apt-get install chromium) to run the report test"


def chromium_path() -> str:
    """The system Chromium, or skip with the fix (CI installs it: .ci/run)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(CHROMIUM_HINT)


@dataclass
class ReportView:
    """What the browser showed."""

    front_page: str = ""  # the text of the workflow description
    # at load, before any scrolling: element -> its box (x, y, width, height) in the window
    front_page_boxes: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    viewport: tuple[int, int] = (0, 0)  # window width, height
    categories: dict[str, list[str]] = field(default_factory=dict)  # category -> subcategories
    images: dict[str, tuple[int, int]] = field(default_factory=dict)  # result -> decoded w, h
    # result -> where the image is drawn in the window (x, y, width, height)
    image_boxes: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    pages: dict[str, str] = field(default_factory=dict)  # HTML result -> its text in the frame
    tables: dict[str, str] = field(default_factory=dict)  # result -> text shown for a table
    failures: dict[str, str] = field(default_factory=dict)  # result -> what went wrong
    errors: list[str] = field(default_factory=list)  # page errors and console errors


_SHOWN_IMAGE = """() => {
    const img = document.querySelector('img[src^="data:image/png"], img[src^="data:image/svg"]'
        + ':not([src*="filename=logo"])');
    if (!(img && img.complete && img.naturalWidth > 0)) return null;
    const r = img.getBoundingClientRect();
    return [img.naturalWidth, img.naturalHeight, r.x, r.y, r.width, r.height];
}"""

# An HTML result is shown in a frame whose source is the page as a data URI (so the frame's
# document is another origin's): the frame must be drawn, and its source is what it shows.
_SHOWN_FRAME = """() => {
    const f = document.querySelector('iframe');
    if (!f || !f.src.startsWith('data:text/html')) return null;
    const r = f.getBoundingClientRect();
    return r.width > 0 && r.height > 0 ? f.src : null;
}"""

# The front page at load: its title and its first image (the summary figure), where drawn.
_FRONT_PAGE_BOXES = """() => {
    const box = el => { if (!el) return null; const r = el.getBoundingClientRect();
                        return [r.x, r.y, r.width, r.height]; };
    const page = document.querySelector('.prose');
    return {title: box(page && page.querySelector('h1')),
            figure: box(page && page.querySelector('img')),
            page: box(page)};
}"""


def inside(box: tuple[float, float, float, float], viewport: tuple[int, int]) -> bool:
    """Whether a box (x, y, width, height) lies whole inside a window of `viewport`."""
    x, y, w, h = box
    return x >= 0 and y >= 0 and x + w <= viewport[0] and y + h <= viewport[1]


def _open(page, category: str, subcategory: str, timeout_ms: int) -> None:
    """Menu -> category (-> subcategory), by clicking as a reader does."""
    page.evaluate("app.setView({navbarMode: 'menu', category: undefined, subcategory: undefined})")
    page.get_by_role("link", name=category, exact=True).click(timeout=timeout_ms)
    if page.evaluate("app.state.navbarMode") != "subcategory":
        page.get_by_role("link", name=subcategory, exact=True).click(timeout=timeout_ms)
    page.wait_for_function(
        "([c, s]) => app.state.category === c && app.state.subcategory === s",
        arg=[category, subcategory],
        timeout=timeout_ms,
    )


def _show(page, button, results: dict, view: ReportView, timeout_ms: int) -> None:
    """One result's view button: an image is shown in the page (and must decode); a table is
    a download of a data URI (Snakemake does not show CSV inline), whose text is recorded."""
    from playwright.sync_api import Error as PlaywrightError

    href = button.get_attribute("href") or ""
    if href.startswith("data:"):
        name = button.get_attribute("download") or href[:60]
        path = next((k for k, r in results.items() if r["data_uri"] == href), name)
        view.tables[path] = _decode_data_uri(href)
        return
    button.click()
    path = page.evaluate("app.state.resultPath")
    html = str(path).endswith(".html")
    try:
        handle = page.wait_for_function(
            "p => app.state.resultPath === p && ("
            + (_SHOWN_FRAME if html else _SHOWN_IMAGE)
            + ")()",
            arg=path,
            timeout=timeout_ms,
        )
        if html:
            view.pages[path] = _decode_data_uri(handle.json_value())
        else:
            width, height, *box = handle.json_value()
            view.images[path] = (width, height)
            view.image_boxes[path] = tuple(box)
    except PlaywrightError as exc:
        view.failures[str(path)] = str(exc)


def _decode_data_uri(uri: str) -> str:
    import base64

    header, _, payload = uri.partition(",")
    data = base64.b64decode(payload) if header.endswith(";base64") else payload.encode()
    return data.decode("utf-8", errors="replace")


def browse_report(
    report: Path, timeout_ms: int = 15_000, viewport: tuple[int, int] = (1400, 900)
) -> ReportView:
    """Click through every result of `report` in headless Chromium, in a window of `viewport`
    (a laptop's, by default)."""
    from playwright.sync_api import sync_playwright

    view = ReportView()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            view.viewport = viewport
            page.on("pageerror", lambda e: view.errors.append(f"page error: {e}"))
            page.on(
                "console",
                lambda m: view.errors.append(f"console: {m.text}") if m.type == "error" else None,
            )
            page.goto(report.resolve().as_uri())
            page.wait_for_function("typeof app !== 'undefined'", timeout=timeout_ms)
            view.front_page = page.inner_text("#workflow-description, body")
            page.wait_for_function(
                "() => { const i = document.querySelector('.prose img');"
                " return !i || i.complete; }",
                timeout=timeout_ms,
            )
            boxes = page.evaluate(_FRONT_PAGE_BOXES)
            view.front_page_boxes = {k: tuple(v) for k, v in boxes.items() if v}
            results = page.evaluate("results")
            categories = page.evaluate("categories")
            for category, subcategories in categories.items():
                view.categories[category] = list(subcategories)
                for subcategory, paths in subcategories.items():
                    _open(page, category, subcategory, timeout_ms)
                    # results that differ in one label share a row, with a toggle per value
                    toggles = page.locator('label[for^="toggle-"]')
                    for t in range(max(toggles.count(), 1)):
                        if toggles.count():
                            toggles.nth(t).click()
                        buttons = page.locator('a[iconname="eye"]')
                        for i in range(buttons.count()):
                            _show(page, buttons.nth(i), results, view, timeout_ms)
                    missing = set(paths) - set(view.images) - set(view.tables) - set(view.pages)
                    if missing:
                        view.failures[f"{category}/{subcategory}"] = f"never shown: {missing}"
        finally:
            browser.close()
    return view
