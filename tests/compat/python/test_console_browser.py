"""The debug console in a real browser: headless Chromium (the `browser` fixture of conftest.py)
opens the console with its token, watches a pusher-js client (served from this suite's node_modules)
connect, sends it an event from the console's form, and checks that a client event carrying
HTML and script shows as text and runs nothing. A screenshot is saved as a test artifact."""

import json
import os
import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import APP_ID, APP_KEY, APP_SECRET, HOST, PORT

HERE = Path(__file__).resolve().parent
ARTIFACTS = Path(os.environ.get("HERALD_ARTIFACTS", HERE.parent / "artifacts"))
WAIT = 10
# Shown as text it is harmless; parsed as HTML it would set these.
PAYLOAD = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><b id="injected">bold</b>'


def console_token():
    with open(os.environ["HERALD_COMPAT_CONFIG"]) as f:
        return json.load(f)["console"]["token"]


def wait_for(driver, what, predicate):
    return WebDriverWait(driver, WAIT).until(lambda d: predicate(d), message=f"waiting for {what}")


def log_entries(driver, kind):
    return driver.find_elements(By.CSS_SELECTOR, f'#log li[data-kind="{kind}"]')


def test_console_watches_a_client_sends_it_an_event_and_shows_html_as_text(browser, client_page):
    channel = f"private-console-{int(time.time() * 1000):x}"
    base = f"http://{HOST}:{PORT}"
    # The token is traded for a cookie and leaves the URL.
    browser.get(f"{base}/console?token={console_token()}")
    wait_for(browser, "the console's redirect", lambda d: d.current_url == f"{base}/console")
    wait_for(browser, "the overview", lambda d: d.find_elements(By.CSS_SELECTOR, f'#apps tr[data-app="{APP_ID}"]'))
    # A single node has no Redis to show.
    assert not browser.find_element(By.ID, "redis").is_displayed()
    console = browser.current_window_handle

    browser.switch_to.new_window("tab")
    browser.get(client_page)
    wait_for(browser, "pusher-js connected", lambda d: d.execute_script(
        "return window.pusherClient && window.pusherClient.connection.state === 'connected'"))
    socket_id = browser.execute_script("return window.pusherClient.connection.socket_id")
    browser.execute_script("window.subscribeTo(arguments[0])", channel)
    wait_for(browser, "the subscription", lambda d: d.execute_script("return !!window.subscribed[arguments[0]]", channel))
    client = browser.current_window_handle

    browser.switch_to.window(console)
    wait_for(browser, "the connection in the log", lambda d: any(
        socket_id in e.text for e in log_entries(d, "connection_opened")))
    wait_for(browser, "the subscription in the log", lambda d: any(
        channel in e.text for e in log_entries(d, "subscribed")))
    wait_for(browser, "the channel in the channel list", lambda d: d.find_elements(
        By.CSS_SELECTOR, f'#channels tr[data-channel="{channel}"]'))

    # An event sent from the console's form reaches the client.
    for field, value in [("send-channel", channel), ("send-event", "from-console"), ("send-data", '{"n": 1}')]:
        box = browser.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    browser.find_element(By.ID, "send-button").click()
    wait_for(browser, "the send result", lambda d: d.find_element(By.ID, "send-result").text == "sent")
    browser.switch_to.window(client)
    wait_for(browser, "the event at the client", lambda d: d.execute_script(
        "return window.received.some(r => r.event === 'from-console' && r.data && r.data.n === 1)"))

    # A client event carrying HTML and script: text in the console, nothing run or injected.
    assert browser.execute_script("return window.sendClientEvent(arguments[0], 'client-html', {html: arguments[1]})", channel, PAYLOAD)
    browser.switch_to.window(console)
    entry = wait_for(browser, "the client event in the log", lambda d: next(
        (e for e in log_entries(d, "client_event") if "client-html" in e.text), None))
    assert '<img src=x onerror=' in entry.text and "<script>" in entry.text, entry.text
    assert browser.find_elements(By.CSS_SELECTOR, "#log img, #log script, #injected") == []
    assert browser.execute_script("return window.__pwned") is None
    assert browser.find_elements(By.CSS_SELECTOR, "#log li.entry"), "the log shows entries"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "console.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000, "the screenshot is an image of the page"


def test_the_console_without_its_token_shows_nothing(browser):
    base = f"http://{HOST}:{PORT}"
    browser.get(f"{base}/console")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "401" in body or "console" in body.lower()
    assert APP_KEY not in body and APP_ID not in body
