"""The course as a student meets it: JupyterLab in a real browser.

nbclient (tests/test_notebooks.py) runs every cell, but not the way a student
does: through JupyterLab's menus, typing into a cell, reading what the page
shows. Here headless Chromium (Debian's), driven by Playwright, opens a
notebook in JupyterLab, runs it with Run → Run All Cells, then does two
exercises by typing a solution into their "Your turn" cells — after Run All,
when the notebook's last cell has already cleaned up — and reads the ✔ their
checks print. Once in English, once in Spanish (JupyterLab's own menus in
Spanish too, as Settings → Language sets them).

The notebooks are served from a copy: JupyterLab saves what it runs (autosave),
and the repository's notebooks must stay as they are.
"""

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time

import pytest
from proc_helper import free_port, stop_group

from labkit import i18n
from labkit.course import lab

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="the notebooks need root")]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The menu and its item as the page shows them (the Spanish language pack,
# requirements.txt, leaves the Run menu's own title in English).
RUN_ALL = {"en": ("Run", "Run All Cells"), "es": ("Run", "Ejecutar todas las celdas")}
NOTEBOOK = {"en": "01-chroot.ipynb", "es": "es/01-chroot.ipynb"}

# What a student types into the "Your turn" cells: 01.chroot's last hint as
# a cell runs it (`!`, and no sudo: the notebook's kernel is root already),
# and a breakout of the student's own.
TYPED = {
    "01.chroot": "!" + lab.get("01.chroot").hints[-1].replace("sudo ", ""),
    "01.breakout": ("%%writefile /tmp/lab01/breakout.py\nimport os\nos.makedirs('jail', exist_ok=True)\n"
                    "os.chroot('jail')\nfor _ in range(64):\n    os.chdir('..')\nos.chroot('.')\n"),
}


def settings(home, plugin, values):
    """A JupyterLab user setting, as Settings → … writes it."""
    path = os.path.join(home, ".jupyter/lab/user-settings/@jupyterlab", plugin + ".jupyterlab-settings")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(values, f)


@pytest.fixture
def jupyterlab(tmp_path, rootfs):
    """start(lang) → the URL of a notebook of the course in a JupyterLab on
    loopback, served from a copy of notebooks/; the server's whole process
    group stopped, and 01's exercises reset, afterwards."""
    servers = []

    def start(lang):
        home, root = tmp_path / "home", tmp_path / "notebooks"
        shutil.copytree(os.path.join(REPO, "notebooks"), root)
        home.mkdir()
        # JupyterLab draws only the cells in view by default; every cell in
        # the page lets the test find them by their place in the notebook.
        settings(home, "notebook-extension/tracker", {"windowingMode": "none"})
        if lang == "es":
            settings(home, "translation-extension/plugin", {"locale": "es_ES"})
        token, port = secrets.token_hex(16), free_port()
        env = dict(os.environ, HOME=str(home), JUPYTER_TOKEN=token, LABKIT_LANG=lang)
        env.pop("JUPYTER_RUNTIME_DIR", None)
        with open(tmp_path / "jupyter.log", "w") as log:
            servers.append(subprocess.Popen(
                [os.path.join(sys.prefix, "bin/jupyter"), "lab", "--allow-root", "--no-browser", "--ip=127.0.0.1",
                 f"--port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}"],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True))
        return f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK[lang]}?token={token}", root / NOTEBOOK[lang]

    try:
        yield start
    finally:
        for server in servers:
            stop_group(server)
        for ex in lab.exercises():
            if ex.notebook == "01":
                lab.reset(ex.id)


@pytest.fixture
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: `make test` installs requirements.txt", pytrace=False)
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.fail("chromium is missing: `make test` installs it (provision.sh --test-tools)", pytrace=False)
    with sync_playwright() as p:
        # --no-sandbox: Chromium refuses its sandbox as root.
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def open_notebook(page, url, deadline=90):
    """Load the page (the server may still be starting) and wait for the
    notebook's cells and its kernel."""
    end = time.monotonic() + deadline
    while True:
        try:
            page.goto(url)
            break
        except Exception:   # connection refused: not listening yet
            if time.monotonic() > end:
                raise
            page.wait_for_timeout(200)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=deadline * 1000)
    # The kernel connected (its name in the toolbar, as a student sees it) and idle.
    page.wait_for_selector(".jp-Toolbar-kernelName:has-text('Python 3')", timeout=deadline * 1000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status=idle]", timeout=deadline * 1000)


PROMPTS = "[...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')].map(e => e.textContent)"
ERRORS = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"


def run_all(page, lang, shot, deadline=300):
    menu, item = RUN_ALL[lang]
    # A student's click into the notebook makes it JupyterLab's current
    # document, the one the Run menu acts on; until then Run All Cells is
    # greyed out (aria-disabled) and a click on it does nothing.
    cell(page, 0).click()
    end = time.monotonic() + 60
    while True:
        page.get_by_role("menuitem", name=menu, exact=True).click()
        entry = page.get_by_role("menuitem", name=item, exact=True)
        if entry.get_attribute("aria-disabled") != "true":
            entry.click()
            break
        assert time.monotonic() < end, f"{item} stayed greyed out"
        page.keyboard.press("Escape")
        page.wait_for_timeout(200)
    # Done when the last code cell has its number, or a cell raised (Run All
    # stops there); the queued cells show [*] meanwhile.
    end, started = time.monotonic() + deadline, time.monotonic() + 30
    while True:
        prompts = page.evaluate(PROMPTS)
        if all(p == "[ ]:" for p in prompts) and time.monotonic() > started:
            page.screenshot(path=shot)
            pytest.fail(f"Run All Cells ran nothing within 30 s: {what_the_page_shows(page)} (screenshot: {shot})")
        if page.locator(ERRORS).count() or (not any("*" in p for p in prompts) and prompts[-1] != "[ ]:"):
            break
        if time.monotonic() > end:
            running = next((i for i, p in enumerate(prompts) if "*" in p), None)
            source = page.locator(".jp-Notebook .jp-CodeCell").nth(running).locator(".cm-content").inner_text() \
                if running is not None else ""
            pytest.fail(f"Run All did not end within {deadline} s: {prompts}; running: {source!r}")
        page.wait_for_timeout(250)
    errors = page.locator(ERRORS).all_inner_texts()
    assert not errors, errors[0][-3000:]
    return prompts


def what_the_page_shows(page):
    """A failure's account of the page: dialogs, the kernel's name and
    status, the active tab, the status bar."""
    seen = {name: page.locator(selector).all_inner_texts() for name, selector in (
        ("dialogs", ".jp-Dialog"), ("kernel", ".jp-Toolbar-kernelName"), ("tab", ".lm-TabBar-tab.lm-mod-current"),
        ("status bar", "#jp-main-statusbar"), ("notifications", ".jp-Notification-Toast"))}
    seen["execution"] = page.locator(".jp-Notebook-ExecutionIndicator").get_attribute("data-status")
    return "; ".join(f"{k}: {' | '.join(v) if isinstance(v, list) else v}" for k, v in seen.items())


def cell(page, index):
    return page.locator(".jp-Notebook .jp-Cell").nth(index)


def type_into(page, index, text):
    """Click into the cell's editor, select all, type ``text`` over it."""
    cell(page, index).locator(".cm-content").click()
    page.keyboard.press("Control+a")
    # insert_text: as pasted, so that the editor adds no closing brackets or indentation
    page.keyboard.insert_text(text)
    assert cell(page, index).locator(".cm-content").inner_text().rstrip("\n") == text.rstrip("\n")


def run_cell(page, index):
    """Shift+Enter in the cell; its output's text once its prompt has a number again."""
    target = cell(page, index)
    before = target.locator(".jp-InputPrompt").inner_text()
    target.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Escape")       # command mode: Shift+Enter runs the selected cell
    page.keyboard.press("Shift+Enter")
    prompt = target.locator(".jp-InputPrompt")
    deadline = time.monotonic() + 120
    while not re.fullmatch(r"\[\d+\]:", prompt.inner_text()) or prompt.inner_text() == before:
        assert time.monotonic() < deadline, f"cell {index} did not finish: {prompt.inner_text()}"
        page.wait_for_timeout(100)
    return target.locator(".jp-OutputArea").inner_text()


def wrapped_rows(page, index):
    """The output rows the browser had to break (wider than the output
    area): what a student reads as words split mid-line."""
    return cell(page, index).locator(".jp-OutputArea-output pre").evaluate_all(
        """els => els.flatMap(el => {
             const rows = el.textContent.replace(/\\n$/, '').split('\\n').length;
             const high = parseFloat(getComputedStyle(el).lineHeight);
             return Math.round(el.getBoundingClientRect().height / high) > rows ? [el.textContent] : [];
           })""")


@pytest.mark.parametrize("lang", ["en", "es"])
def test_run_all_then_an_exercise_in_the_browser(jupyterlab, browser, lang, tmp_path):
    url, path = jupyterlab(lang)
    cells = json.load(open(path))["cells"]
    turn = {c["metadata"]["labkit"]["your_turn"]: i for i, c in enumerate(cells)
            if c.get("metadata", {}).get("labkit", {}).get("your_turn")}
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    open_notebook(page, url)

    prompts = run_all(page, lang, str(tmp_path / "run-all.png"))
    assert len(prompts) == sum(c["cell_type"] == "code" for c in cells) and all(
        re.fullmatch(r"\[\d+\]:", p) for p in prompts), prompts
    # As received, each check says ✗ and its first hint, in the notebook's language.
    words = i18n.catalog(lang) if lang != "en" else {}
    for exercise_id, index in turn.items():
        said = cell(page, index + 1).locator(".jp-OutputArea").inner_text()
        hint = lab.get(exercise_id).hints[0]
        assert said.startswith(f"✗ {exercise_id}") and " ".join(words.get(hint, hint).split()) in " ".join(
            said.split()), said
        assert not wrapped_rows(page, index + 1), wrapped_rows(page, index + 1)

    # Back to two exercises, after Run All cleaned up: the student's own
    # solution typed in, then the check.
    for exercise_id, text in TYPED.items():
        type_into(page, turn[exercise_id], text)
        out = run_cell(page, turn[exercise_id])
        assert "Error" not in out, out
        said = run_cell(page, turn[exercise_id] + 1)
        assert said.startswith(f"✔ {exercise_id}"), said
        assert not wrapped_rows(page, turn[exercise_id] + 1), said
        # What the page shows is what the check says, in the page's language.
        done, seen = lab.get(exercise_id).check()      # this process speaks English
        assert done and (" ".join(said.split()) == f"✔ {exercise_id}: {' '.join(seen.split())}") == (lang == "en")

    # The notebook's last cell, run again, removes what the exercises left.
    out = run_cell(page, len(cells) - 1)
    assert "Error" not in out, out
    assert not subprocess.run(["pgrep", "-f", "^sleep 1011$"], capture_output=True).stdout
