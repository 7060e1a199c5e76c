"""The dashboard in a real browser, against a real demo stack; `status --watch` and `open` on it.

One stack per module (`setup --demo`: three real vllm-mlx servers and the front door).
Headless Chromium from the OS packages (`.ci/chromium`, run by `make test`, installs it
with apt-get) is driven through chromedriver with selenium: a wrong key is refused, the
right one lists the tiers with their states, a tier killed with SIGKILL shows as down
within one refresh, and its request's fallback is listed with the reason. A screenshot
goes to the test's output folder (and to $MLX_STACK_DASHBOARD_SHOT when set: that is how
docs/dashboard.png is made).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import openai
import pytest
from typer.testing import CliRunner

from mlx_stack.cli.app import app
from mlx_stack.core.stack import Stack
from mlx_stack.paths import Paths
from mlx_stack.services import lifecycle, stack_store
from mlx_stack.system import pidfile, ports
from tests.helpers import cli_command, cli_env
from tests.live_stack import LiveStack as Live
from tests.live_stack import running

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
UP_DEADLINE_S = 420
POLL_S = 2.0  # the page's refresh
# "Within one refresh", under a shared CPU: the next poll (2 s), the health check of a dead
# port (immediate), the view's 1 s cache, and slack for a loaded machine.
DOWN_DEADLINE_S = 12.0
SHOT_ENV = "MLX_STACK_DASHBOARD_SHOT"


def _chromium() -> tuple[str, str]:
    """The browser and its driver, installed by .ci/chromium when this machine can; else skip."""
    def find() -> tuple[str | None, str | None]:
        return (shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver"))

    browser, driver = find()
    if not (browser and driver):
        subprocess.run(["bash", str(REPO / ".ci" / "chromium")], check=False, timeout=900)
        browser, driver = find()
    if not (browser and driver):
        pytest.skip("Chromium/chromedriver are not installed and could not be (needs root and apt-get: "
                    "see .ci/chromium)")
    if importlib.util.find_spec("selenium") is None:
        pytest.skip("selenium is missing: pip install -e '.[dev]'")
    return browser, driver


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    _chromium()  # skip before starting a stack there is no browser for
    home = Paths(tmp_path_factory.mktemp("dashboard") / "home")

    def prepare() -> Stack:
        r = CliRunner().invoke(app, ["setup", "--demo", "--no-start"], catch_exceptions=False)
        assert r.exit_code == 0, r.stderr
        stack = stack_store.load(home)
        return replace(stack, tiers=tuple(replace(t, port=ports.free_port()) for t in stack.tiers),
                       gateway=replace(stack.gateway, port=ports.free_port()))

    with running(home, prepare, UP_DEADLINE_S) as stack:
        yield stack


@pytest.fixture(scope="module")
def browser(live: Live) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _chromium()
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1300", "--force-prefers-reduced-motion"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, what: Any, timeout: float = 30.0) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=[StaleElementReferenceException]).until(what)


# The page redraws every 2 s: read it in one script call, never through element handles.
def _cards(driver: Any) -> dict[str, str]:
    pairs = driver.execute_script(
        "return Array.from(document.querySelectorAll('#tiers .tier'))"
        ".map(e => [e.dataset.tier, e.dataset.state + ' ' + e.className]);")
    return {name: state.split(" ")[0] for name, state in pairs}


def _classes(driver: Any, tier: str) -> str:
    return driver.execute_script(
        "const e = document.querySelector(`#tiers .tier[data-tier='${arguments[0]}']`);"
        "return e ? e.className : '';", tier)


def _text(driver: Any, element_id: str) -> str:
    return driver.execute_script("return document.getElementById(arguments[0]).innerText;", element_id)


def _log_in(driver: Any, key: str) -> None:
    from selenium.webdriver.common.by import By

    field = _wait(driver, lambda d: d.find_element(By.ID, "key"))
    field.clear()
    field.send_keys(key)
    driver.find_element(By.ID, "login-button").click()


def test_a_wrong_key_is_refused(live: Live, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(live.url + "/")
    assert "mlx-stack/demo" not in browser.page_source  # the page itself holds no data
    _log_in(browser, "not-the-stack-key-at-all")
    error = _wait(browser, lambda d: d.find_element(By.ID, "login-error").is_displayed()
                  and d.find_element(By.ID, "login-error"))
    assert "Wrong key" in error.text
    assert not browser.find_element(By.ID, "dashboard").is_displayed()
    assert browser.execute_script("return sessionStorage.length") == 0


def test_the_key_lists_the_tiers_with_their_states(live: Live, browser: Any) -> None:

    browser.get(live.url + "/")
    _log_in(browser, live.key)
    _wait(browser, lambda d: len(_cards(d)) == 3)
    assert _wait(browser, lambda d: set(_cards(d).values()) == {"healthy"} and _cards(d))
    assert set(_cards(browser)) == {"standard", "fast", "longctx"}
    assert live.key not in browser.current_url
    assert browser.execute_script("return sessionStorage.getItem('mlx-stack-key')") == live.key
    text = _text(browser, "dashboard")
    assert "mlx-stack/demo-fast" in text and "memory / plan" in text and "budget" in text
    # a reload keeps the session (the key is in this tab's session storage)
    browser.refresh()
    _wait(browser, lambda d: len(_cards(d)) == 3)


def _traffic(live: Live, seconds: float) -> None:
    client = openai.OpenAI(base_url=live.url + "/v1", api_key=live.key, max_retries=0, timeout=120)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for model in ("standard", "fast", "longctx"):
            stream = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Count to ten."}], max_tokens=24,
                stream=True)
            for _ in stream:
                pass


def test_a_killed_tier_shows_down_within_one_refresh(live: Live, browser: Any, tmp_path_factory: Any) -> None:
    _traffic(live, 8.0)  # a few samples for the plots (one every 5 s)
    _wait(browser, lambda d: _cards(d).get("fast") == "healthy")
    record = pidfile.read(live.home.run_dir, "fast")
    assert record is not None
    os.killpg(record.pid, signal.SIGKILL)
    killed = time.monotonic()
    # its next request falls back to another tier: the page lists that with the reason
    reply = openai.OpenAI(base_url=live.url + "/v1", api_key=live.key, max_retries=0, timeout=120) \
        .chat.completions.with_raw_response.create(model="fast", messages=[{"role": "user", "content": "hi"}],
                                                   max_tokens=4)
    assert reply.headers["x-mlx-stack-tier"] != "fast"
    _wait(browser, lambda d: _cards(d).get("fast") in ("crashed", "down"), timeout=DOWN_DEADLINE_S)
    seen_after = time.monotonic() - killed
    assert seen_after < DOWN_DEADLINE_S
    assert "state-down" in _classes(browser, "fast")
    events = _wait(browser, lambda d: "fallback: fast" in _text(d, "events") and _text(d, "events"))
    assert "connection" in events or "refused" in events or "fast:" in events, events
    for name in ("standard", "longctx"):
        assert _cards(browser)[name] == "healthy"
    time.sleep(POLL_S + 0.5)  # one more refresh: the plots and numbers settle for the picture
    out = tmp_path_factory.mktemp("screenshots") / "dashboard.png"
    assert browser.save_screenshot(str(out))
    assert out.stat().st_size > 10_000
    if os.environ.get(SHOT_ENV):
        shutil.copyfile(out, os.environ[SHOT_ENV])
    print(f"screenshot: {out} (fast seen down {seen_after:.1f} s after the kill)")


def test_status_watch_shows_the_same_numbers_and_ctrl_c_exits_0(live: Live) -> None:
    env = cli_env(live.home, NO_COLOR="1", COLUMNS="200")
    proc = subprocess.Popen(cli_command("status", "--watch", "--interval", "1"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err
    for name in ("standard", "fast", "longctx"):
        assert name in out
    assert "crashed" in out and "healthy" in out
    assert "fallback: fast" in out
    assert live.key not in out + err


def test_a_restarted_tier_comes_back_with_a_restart_event(live: Live, browser: Any) -> None:
    lifecycle.up(live.home, tiers=["fast"], health_timeout=UP_DEADLINE_S)
    # the sampler (every 5 s) sees the new process in the pid file; the next poll shows it
    _wait(browser, lambda d: _cards(d).get("fast") == "healthy", timeout=30)
    events = _wait(browser, lambda d: "restart: fast" in _text(d, "events") and _text(d, "events"),
                   timeout=30)
    assert "started again" in events or "restarted after" in events


def test_readable_on_a_phone_dark_and_light(live: Live, browser: Any, tmp_path_factory: Any) -> None:
    browser.set_window_size(390, 844)
    try:
        for scheme, dark in (("dark", True), ("light", False)):
            browser.execute_cdp_cmd("Emulation.setEmulatedMedia",
                                    {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
            _wait(browser, lambda d: len(_cards(d)) == 3)
            fits = browser.execute_script(
                "return document.documentElement.scrollWidth <= window.innerWidth + 1;")
            assert fits, "the page scrolls sideways on a phone"
            rgb = browser.execute_script("return getComputedStyle(document.body).backgroundColor;")
            level = sum(int(x) for x in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3]) / 3
            assert (level < 60) if dark else (level > 200), (scheme, rgb)
            out = tmp_path_factory.mktemp("screenshots") / f"dashboard-phone-{scheme}.png"
            assert browser.save_screenshot(str(out))
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        browser.set_window_size(1280, 1300)


def test_open_prints_the_url_without_the_key(live: Live) -> None:
    r = subprocess.run(cli_command("open", "--print"), env=cli_env(live.home, NO_COLOR="1"),
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == live.url + "/"
    assert live.key not in r.stdout + r.stderr
