"""The app in a real headless Chromium (Debian's, driven by playwright): tabs switch, Generate streams
both texts and their stats, an empty seed box means a random seed and a set one repeats the run, the
next-token candidates and the probability colouring show, the page renders (screenshots in
test-artifacts/), and a phone-width viewport does not scroll sideways."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from app_support import build_model_folders, launch
from lstmgen.app import build_demo
from lstmgen.serve import service
from lstmgen.core.records import RECORDS

pytestmark = [pytest.mark.filterwarnings("ignore::Warning:gradio.*"),
              pytest.mark.filterwarnings("ignore::ResourceWarning")]

CHROMIUM = Path("/usr/bin/chromium")
# Flags that keep Chromium quiet (no outside requests) and working as root.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic",
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
WAIT_MS = 60_000
TAB_TITLES = {name: record.title for name, record in RECORDS.items()}


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    folders = build_model_folders(tmp_path_factory.mktemp("browser-models"))
    served = service.load_all(records=[], sources=[str(folder) for folder in folders.values()], use_hub=False)
    assert all(s.loaded is not None for s in served.values()), {n: s.error for n, s in served.items()}
    demo = build_demo(served)
    url = launch(demo)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's Chromium "
                    "(`apt-get install -y chromium`, as .ci/run does); playwright cannot download its own here.",
                    pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def open_app(browser, url, **context_args):
    context = browser.new_context(**context_args)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # Console errors count, and the plots' warnings (Gradio's own client also warns "Method not implemented."
    # when it closes an event stream: not the app's).
    page.on("console", lambda message: errors.append(f"console {message.type}: {message.text}")
            if (message.type == "error" and "favicon" not in message.text)
            or (message.type == "warning" and "vega" in message.text.lower()) else None)
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("tab", name=TAB_TITLES["char"]).wait_for()
    return context, page, errors


def switch_to(page, name: str) -> None:
    page.get_by_role("tab", name=TAB_TITLES[name]).click()
    page.locator(f"#{name}-prompt textarea").wait_for(state="visible")


FIDELITY = "#{name}-fidelity [data-testid=markdown]"  # the text only, not the status tracker's timer


def run_and_wait(page, name: str, length: int | None = None) -> str:
    """Click Generate and wait for the run to finish: the fidelity line changes and counts all the
    requested steps (it is written when the run is done). Returns that line."""
    fidelity = page.locator(FIDELITY.format(name=name))
    before = fidelity.inner_text()
    page.locator(f"#{name}-generate").click()
    page.wait_for_function(
        """([selector, length, before]) => {
            const text = document.querySelector(selector)?.innerText ?? "";
            return text !== before && text.includes(`of the time (${length} `);
        }""",
        arg=[FIDELITY.format(name=name), length or RECORDS[name].length, before], timeout=WAIT_MS)
    return fidelity.inner_text()


def generate_in_tab(page, name: str, prompt: str) -> dict:
    switch_to(page, name)
    page.locator(f"#{name}-prompt textarea").fill(prompt)
    fidelity = run_and_wait(page, name)
    assert re.search(r"picks the same next [\w ]+ [\d.]+% of the time \(\d+ [\w ]+\)", fidelity), fidelity
    assert re.search(r"^(The two texts are identical\.|The texts part at the first \w+|The texts part at \w[\w ]* \d+; up "
                     r"to there the compressed copy chose exactly as the full model\.)", fidelity), fidelity
    assert re.search(r"Random seed \d+", fidelity), fidelity
    texts = {side: page.locator(f"#{name}-{side} textarea").input_value() for side in ("float32", "int8")}
    for side, text in texts.items():
        assert text.startswith(prompt) and len(text) > len(prompt), f"{name} {side} box: {text[:80]!r}"
        stats = page.locator(f"#{name}-{side}-stats").inner_text()
        assert re.search(r"[\d,]+ pieces a second · first after \d+ ms · all in \d+ ms", stats), stats
    return texts


def assert_not_blank(path: Path) -> None:
    from PIL import Image, ImageStat

    with Image.open(path) as image:
        assert image.width > 0 and image.height > 0
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        spread = ImageStat.Stat(rgb.convert("L")).stddev[0]
    assert len(colours) > 50, f"{path} looks blank: {len(colours)} distinct colours"
    assert spread > 10, f"{path} looks blank: pixel standard deviation {spread:.1f}"


def coloured_pixels(path: Path) -> int:
    """Pixels that are neither grey nor white: the lines of a plot."""
    from PIL import Image

    with Image.open(path) as image:
        return sum(1 for r, g, b in image.convert("RGB").getdata() if max(r, g, b) - min(r, g, b) > 60)


def test_tabs_generate_and_page_renders(browser, url, artifacts):
    context, page, errors = open_app(browser, url, viewport={"width": 1280, "height": 900})
    try:
        assert page.title() == "lstmgen: LSTM text generation"
        for name in ("subword", "word", "char"):
            switch_to(page, name)
        generate_in_tab(page, "char", "ROMEO:\nBut")
        words = generate_in_tab(page, "word", "Harry looked at")
        assert words["float32"] != "Harry looked at"
        shot = artifacts / "app.png"
        page.screenshot(path=str(shot), full_page=True)
        assert_not_blank(shot)
        assert not errors, f"JavaScript errors on the page: {errors}"
    finally:
        context.close()


def test_phone_width_has_no_horizontal_overflow(browser, url, artifacts):
    context, page, errors = open_app(browser, url, viewport={"width": 390, "height": 844}, is_mobile=True,
                                     device_scale_factor=2)
    try:
        # Every tab is in sight: no tab hides behind a "⋯" menu.
        for title in [*TAB_TITLES.values(), "Train your own"]:
            assert page.get_by_role("tab", name=title).is_visible(), title
        assert not page.get_by_role("button", name="More tabs").is_visible()
        # Generate sits right below the prompt, on the first screen.
        prompt, run = (page.locator(f"#char-{part}").bounding_box() for part in ("prompt", "generate"))
        assert prompt["y"] + prompt["height"] <= run["y"] < prompt["y"] + prompt["height"] + 60
        assert run["y"] + run["height"] <= 844, f"Generate is {run['y']:.0f} px down a 844 px screen"
        # The two outputs come first, stacked; what the model expects next comes after them.
        outputs = [page.locator(f"#char-{side}").bounding_box() for side in ("float32", "int8")]
        candidates = page.locator("#char-next-float").bounding_box()
        assert outputs[0]["y"] + outputs[0]["height"] <= outputs[1]["y"] + 1 <= candidates["y"]
        generate_in_tab(page, "char", "ROMEO:")
        shot = artifacts / "app-phone.png"
        page.screenshot(path=str(shot), full_page=True)
        assert_not_blank(shot)
        overflow = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert overflow[0] <= overflow[1] + 1, f"page is {overflow[0]} px wide in a {overflow[1]} px viewport"
        assert not errors, f"JavaScript errors on the page: {errors}"
    finally:
        context.close()


def shown_seed(page, name: str) -> str:
    """Click Generate and return the seed the finished run reports."""
    return re.search(r"Random seed (\d+)", run_and_wait(page, name)).group(1)


def test_the_seed_box_is_random_when_empty_and_fixed_when_set(browser, url):
    context, page, errors = open_app(browser, url, viewport={"width": 1280, "height": 900})
    try:
        switch_to(page, "word")
        page.locator("#tab-word").get_by_text("More settings", exact=True).click()
        seed_box = page.locator("#tab-word").get_by_label("Random seed")
        seed_box.wait_for(state="visible")
        assert seed_box.input_value() == ""  # empty, not 0: an empty seed means a random one
        assert len({shown_seed(page, "word") for _ in range(2)}) == 2
        texts = {}
        for seed in ("42", "7", "42"):  # a set seed repeats its run
            seed_box.fill(seed)
            assert shown_seed(page, "word") == seed
            texts.setdefault(seed, []).append(page.locator("#word-float32 textarea").input_value())
        assert texts["42"][0] == texts["42"][1] != texts["7"][0]
        seed_box.fill("abc")
        page.locator("#word-generate").click()
        page.get_by_text("seed must be a number, not 'abc'").first.wait_for(state="visible")
        assert not errors, f"JavaScript errors on the page: {errors}"
    finally:
        context.close()


def test_next_token_candidates_and_probability_colouring_show(browser, url, artifacts):
    context, page, errors = open_app(browser, url, viewport={"width": 1280, "height": 1100})
    try:
        switch_to(page, "char")
        # Typing a prompt updates both models' candidate bars (the prompt's input event).
        # The page opens with the first example's candidates ("ROMEO:" is followed by a line break, ↵).
        page.wait_for_function("() => (document.querySelector('#char-next-float')?.innerText ?? '').includes('↵')",
                               timeout=WAIT_MS)
        page.locator("#char-prompt textarea").fill("ROMEO:\nBut soft, what light through yonder")
        page.wait_for_function("() => (document.querySelector('#char-next-float')?.innerText ?? '').includes('␣')"
                               " && (document.querySelector('#char-next-int8')?.innerText ?? '').includes('␣')",
                               timeout=WAIT_MS)
        note = page.locator("#char-next-note [data-testid=markdown]")
        assert "Both expect the same character most." in note.inner_text() and "KL divergence" in note.inner_text()
        for side in ("float", "int8"):
            bars = page.locator(f"#char-next-{side}")
            assert "␣" in bars.inner_text() and "%" in bars.inner_text(), bars.inner_text()
        run_and_wait(page, "char")
        coloured = page.locator("#char-float32-colour")
        assert not coloured.is_visible()  # plain text by default
        page.locator("#char-colour input").check()
        coloured.wait_for(state="visible")
        assert page.locator("#char-int8-colour").is_visible() and not page.locator("#char-float32 textarea").is_visible()
        legend = coloured.inner_text()
        assert "sure (≥ 90%)" in legend and "ROMEO:" in legend
        # Where the two sides wrote the same pieces, they were just as sure of them: the same colours.
        pieces = {side: page.eval_on_selector_all(
            f"#char-{side}-colour .token", "spans => spans.map(s => [s.innerText, getComputedStyle(s).backgroundColor])")
            for side in ("float32", "int8")}
        # (Each side is coloured by its own model's probability: near a band's edge, 0.899 against 0.901, the two
        # can differ; before the float side's probabilities were fixed almost every piece differed.)
        same = next((i for i, (f, q) in enumerate(zip(*pieces.values())) if f[0] != q[0]), len(pieces["int8"]))
        alike = sum(f == q for f, q in zip(pieces["float32"][:same], pieces["int8"][:same]))
        assert same > 5 and alike >= 0.95 * same, pieces
        shot = artifacts / "app-inside.png"
        page.screenshot(path=str(shot), full_page=True)
        assert_not_blank(shot)
        assert not errors, f"JavaScript errors on the page: {errors}"
    finally:
        context.close()


def test_chromium_is_present():
    """Fails (never skips) without the browser, so a CI machine missing it is noticed."""
    assert CHROMIUM.is_file() and shutil.which("chromium"), (
        f"{CHROMIUM} is missing: install it with `apt-get install -y chromium` (as .ci/run does)")


def test_train_your_own_from_an_upload_to_a_download(browser, url, artifacts, tmp_path):
    """Upload a text file, train for 10 seconds, watch the progress and the loss plot, generate with the new
    model, and download its folder as a zip."""
    text_file = tmp_path / "my-play.txt"
    text_file.write_text((Path(__file__).resolve().parent.parent / "data" / "tinyshakespeare.txt").read_text()[:60_000])
    context, page, errors = open_app(browser, url, viewport={"width": 1280, "height": 1400}, accept_downloads=True)
    try:
        page.get_by_role("tab", name="Train your own").click()
        # A text too short to learn from gets the reason in words, not a bare "Error" badge.
        page.locator("#train-text textarea").fill("too short")
        page.locator("#train-start").click()
        page.get_by_text("the text is 9 bytes; a model needs at least 1,000 to learn from").first.wait_for(state="visible")
        page.locator("#train-text textarea").fill("")
        page.locator("#train-file input[type=file]").set_input_files(str(text_file))
        page.locator("#tab-train").get_by_label("tiny", exact=False).first.check()
        page.locator("#tab-train input[type=number]").first.fill("10")
        page.locator("#tab-train input[type=number]").first.press("Enter")
        assert page.locator("#train-stop").is_disabled() and not page.locator("#train-plot").is_visible()
        page.locator("#train-start").click()
        page.locator("#train-status").get_by_text("training").first.wait_for(timeout=WAIT_MS)
        assert page.locator("#train-stop").is_enabled()
        page.locator("#tab-train .progress-text, #tab-train .eta-bar, #tab-train .progress-level").first.wait_for(
            state="attached", timeout=WAIT_MS)  # gradio's progress bar
        page.locator("#train-figures").get_by_text("parameters").wait_for(timeout=2 * WAIT_MS)
        plot = tmp_path / "plot.png"
        page.locator("#train-plot").screenshot(path=str(plot))
        assert coloured_pixels(plot) > 200, "the loss plot has no lines"
        status = page.locator("#train-status").inner_text()
        assert "Done." in status, status
        figures = page.locator("#train-figures").inner_text()
        assert re.search(r"its average surprise is [\d.]+ \(loss", figures), figures
        assert page.locator("#train-stop").is_disabled()  # Stop only while a training runs
        page.locator("#train-prompt textarea").fill("ROMEO:")
        page.locator("#train-generate").click()
        page.wait_for_function("() => (document.querySelector('#train-float32 textarea')?.value ?? '').length > 20",
                               timeout=WAIT_MS)
        assert page.locator("#train-int8 textarea").input_value().startswith("ROMEO:")
        assert "pieces a second" in page.locator("#train-float32-stats").inner_text()
        # On a phone the trained model's two outputs stack.
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_timeout(500)
        full, compressed = (page.locator(f"#train-{side}").bounding_box() for side in ("float32", "int8"))
        assert full["y"] + full["height"] <= compressed["y"] + 1 and compressed["width"] < 390
        page.set_viewport_size({"width": 1280, "height": 1400})
        shot = artifacts / "app-train.png"
        page.screenshot(path=str(shot), full_page=True)
        assert_not_blank(shot)
        with page.expect_download() as download_info:
            page.locator("#train-download").click()
        zipped = tmp_path / "model.zip"
        download_info.value.save_as(zipped)
        import zipfile

        with zipfile.ZipFile(zipped) as z:
            assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json"} <= set(z.namelist())
        assert not errors, f"JavaScript errors on the page: {errors}"
    finally:
        context.close()


@pytest.fixture(scope="module")
def shipped_url():
    """The app as `python app.py --no-hub` serves it: the three shipped models."""
    demo = build_demo(service.load_all(use_hub=False))
    url = launch(demo)
    yield url
    demo.close()


def test_the_readmes_screenshot_shows_the_shipped_char_model_at_work(browser, shipped_url, artifacts):
    """The picture at the top of the README: the char tab after a run with a set seed, the colouring on, with
    what the model expects next; and a cell along that text. Written to test-artifacts/ (readme-app.png,
    readme-cells.png); with UPDATE_README_PICTURES=1 to docs/app.png and docs/cells.png, which the README shows."""
    import os

    folder = Path(__file__).resolve().parent.parent / "docs" if os.environ.get("UPDATE_README_PICTURES") == "1" \
        else artifacts
    context, page, errors = open_app(browser, shipped_url, viewport={"width": 1280, "height": 1250})
    try:
        page.locator("#char-prompt textarea").fill("ROMEO:\nBut soft, what light")
        page.locator("#char-length input[type=number]").fill("240")
        page.locator("#char-length input[type=number]").press("Enter")
        page.locator("#tab-char").get_by_text("More settings", exact=True).click()
        seed_box = page.locator("#tab-char").get_by_label("Random seed")
        seed_box.wait_for(state="visible")
        page.wait_for_timeout(300)  # the opened accordion settles before its box is typed into
        seed_box.press_sequentially("7")  # key by key, as a person types: each keystroke reaches the page's state
        seed_box.blur()
        page.wait_for_timeout(300)  # the settings reach the page's state before Generate reads them
        assert seed_box.input_value() == "7"
        fidelity = run_and_wait(page, "char", length=240)
        assert "Random seed 7" in fidelity
        page.locator("#tab-char").get_by_text("More settings", exact=True).click()
        page.locator("#char-colour input").check()
        page.locator("#char-float32-colour").wait_for(state="visible")
        text = page.locator("#char-float32-colour").inner_text()
        assert "ROMEO:" in text and "sure (≥ 90%)" in text
        page.wait_for_function("() => (document.querySelector('#char-next-float')?.innerText ?? '').includes('%')")
        shot = folder / ("app.png" if folder != artifacts else "readme-app.png")
        page.wait_for_timeout(1000)  # the colouring fades in
        page.screenshot(path=str(shot), full_page=False)
        assert_not_blank(shot)
        # The README's second picture: the best cell for "characters since the line began" along that text.
        page.locator("#char-colour input").uncheck()
        page.locator("#char-cells").get_by_text("Inside the network: what its cells keep").click()
        page.locator("#char-cell-table").get_by_text("counts characters since the line began").first.click()
        page.wait_for_function("() => document.querySelectorAll('#char-cell-float32 .token').length > 200")
        page.locator("#char-cell-float32 .token").nth(30).locator("*").first.click()
        page.locator("#char-cell-pointed").get_by_text("in the full model").wait_for()
        shot = shot.with_name(shot.name.replace("app", "cells"))
        page.wait_for_timeout(1000)
        page.locator("#char-cells").screenshot(path=str(shot))
        assert_not_blank(shot)
        assert not errors, f"JavaScript errors or warnings on the page: {errors}"
    finally:
        context.close()


def test_the_cell_explorer_colours_the_text_by_the_cell_picked_and_scoring_says_how_surprising(browser, shipped_url,
                                                                                              artifacts):
    context, page, errors = open_app(browser, shipped_url, viewport={"width": 1280, "height": 1400})
    colours = ("spans => spans.map(s => getComputedStyle(s).backgroundColor)")
    try:
        page.locator("#char-cells").get_by_text("Inside the network: what its cells keep").click()
        table = page.locator("#char-cell-table")
        table.get_by_text("counts characters since the line began").first.wait_for()
        # The top feature's best cell, on the prompt (nothing generated yet): red late in a line, blue at its start.
        table.get_by_text("counts characters since the line began").first.click()
        page.wait_for_function("() => document.querySelectorAll('#char-cell-float32 .token').length > 5")
        first = page.eval_on_selector_all("#char-cell-float32 .token", colours)
        assert any(c.startswith("rgba(2") or "255, 0" in c for c in first) or len(set(first)) > 3, first
        assert len(set(first)) > 3  # a gradient, not one colour
        shot = artifacts / "app-cells.png"
        page.locator("#char-cells").screenshot(path=str(shot))
        assert_not_blank(shot)
        # Another feature's cell colours the same text differently.
        table.get_by_text("inside a word").first.click()
        page.wait_for_function("([sel, before]) => JSON.stringify([...document.querySelectorAll(sel)]"
                               ".map(s => getComputedStyle(s).backgroundColor)) !== before",
                               arg=["#char-cell-float32 .token", __import__("json").dumps(first)])
        # Pointing at a piece gives its value.
        page.locator("#char-cell-float32 .token").nth(2).locator("*").first.click()
        page.locator("#char-cell-pointed").get_by_text("in the full model").wait_for()
        # Score your own text.
        page.locator("#char-score").get_by_text("How surprising is your text?").click()
        page.locator("#char-score-text textarea").fill("JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\n")
        page.locator("#char-score-run").click()
        verdict = page.locator("#char-score-verdict")
        verdict.get_by_text("bits per character").first.wait_for()
        assert "Shakespeare-like" in verdict.inner_text()
        assert not errors, f"JavaScript errors or warnings on the page: {errors}"
    finally:
        context.close()
