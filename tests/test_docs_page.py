"""The interactive reference at /docs: its files over HTTP, then the page in a real
browser (Debian's headless Chromium, driven through chromedriver by selenium): every
operation rendered, "Try it out" on end-contact with a key typed into Authorize gives a
201, and the page asks nothing of any host but the service."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver import Chrome
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.wait import WebDriverWait

from api.docs import POLICY, accepts_gzip
from tests.conftest import Caller
from tests.helpers import URL, assert_problem, lookup_path

# Each browser step takes well under a second on an idle machine; the deadline only
# stops a hang (two loaded cores have made one take several seconds).
STEP = 30.0
# Where the screenshot goes when asked for (docs/api.md shows docs/docs-page.png):
# ENDCONTACT_DOCS_SCREENSHOT=docs/docs-page.png .venv/bin/pytest tests/test_docs_page.py
SCREENSHOT = "ENDCONTACT_DOCS_SCREENSHOT"
NUMBERS = ["(509) 555-0142", "+1 201-555-0123"]
E164 = ["+15095550142", "+12015550123"]


def _static_urls(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', page)


def test_page_and_files_need_no_key_and_are_served_with_types_and_caching(
    client: httpx.Client,
) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"] == POLICY
    assert "default-src 'none'" in POLICY
    assert page.headers["cache-control"] == "no-cache"
    urls = _static_urls(page.text)
    # Relative, so from the service whatever its host, and never another's.
    assert urls
    assert all(not urlsplit(url).scheme and not url.startswith("/") for url in urls), urls
    types = {
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".png": "image/png",
    }
    for url in (url for url in urls if url.startswith("docs/static/")):
        response = client.get(f"/{url}", headers={"accept-encoding": "gzip"})
        assert response.status_code == 200, url
        assert response.headers["content-type"] == types[Path(url).suffix]
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["x-content-type-options"] == "nosniff"
        if url.endswith((".js", ".css")):
            assert response.headers["content-encoding"] == "gzip"
        again = client.get(f"/{url}", headers={"if-none-match": response.headers["etag"]})
        assert again.status_code == 304
        assert again.content == b""
    bundle = next(url for url in urls if url.endswith("swagger-ui-bundle.js"))
    plain = client.get(f"/{bundle}", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.content.startswith(b"/*! For license information")

    version = bundle.split("/")[2]
    for path in (
        f"/docs/static/{version}/index.html",  # in the package, not on the list
        f"/docs/static/{version}/..%2F..%2Fapi%2Fapp.py",
        f"/docs/static/{version}/%2e%2e%2fswagger-ui.css",
        f"/docs/static/{version}/../../../etc/passwd",
        "/docs/static/0123456789ab/swagger-ui.css",  # another version's file
        "/docs/static/swagger-ui.css",
        "/docs//",
    ):
        assert_problem(client.get(path), 404)


def test_docs_with_a_slash_is_sent_to_the_page(client: httpx.Client) -> None:
    moved = client.get("/docs/", headers={"host": "evil.example"})
    assert moved.status_code == 308
    # Relative, so that it keeps a proxy's prefix, and never the Host header's.
    assert moved.headers["location"] == "../docs"
    assert str(moved.url.join(moved.headers["location"])).endswith("/docs")
    page = client.get("/docs/", follow_redirects=True)
    assert (page.status_code, page.url.path) == (200, "/docs")
    assert page.content == client.get("/docs").content


@pytest.mark.parametrize(
    ("header", "gzip"),
    [
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.5", True),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("gzip;q=nonsense", False),
        ("identity", False),
        ("", False),
    ],
)
def test_gzip_only_when_accepted(header: str, gzip: bool) -> None:
    assert accepts_gzip(header) is gzip


@pytest.fixture(scope="module")
def browser() -> Iterator[Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail(
            "tests/test_docs_page.py needs Debian's chromium and chromium-driver on PATH: "
            "./scripts/test installs them when run as root, or "
            "`apt-get install chromium chromium-driver`."
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root, in a container
        "--disable-dev-shm-usage",
        "--window-size=1280,1400",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    # The driver given by path: selenium's own manager would try to download one.
    session = Chrome(options=options, service=Service(executable_path=driver))
    try:
        yield session
    finally:
        session.quit()


def _rendered_operations(browser: Chrome) -> set[tuple[str, str]]:
    try:
        return {
            (
                block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text,
                block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute(
                    "data-path"
                )
                or "",
            )
            for block in browser.find_elements(By.CSS_SELECTOR, ".opblock")
        }
    except StaleElementReferenceException:  # React re-rendered mid-read: read again
        return set()


def _rendered_tags(browser: Chrome) -> list[str]:
    return [
        section.get_attribute("data-tag") or ""
        for section in browser.find_elements(By.CSS_SELECTOR, ".opblock-tag")
    ]


def _operation(browser: Chrome, method: str, path: str) -> WebElement:
    summary = browser.find_element(
        By.CSS_SELECTOR, f'.opblock-{method} .opblock-summary-path[data-path="{path}"]'
    )
    return summary.find_element(By.XPATH, "./ancestor::div[contains(@class, 'opblock ')]")


def _authorize(browser: Chrome, wait: WebDriverWait[Chrome], secret: str) -> None:
    browser.find_element(By.CSS_SELECTOR, ".auth-wrapper button.authorize").click()
    dialog = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))
    dialog.find_element(By.CSS_SELECTOR, ".auth-container input").send_keys(secret)
    dialog.find_element(By.CSS_SELECTOR, "button.modal-btn.authorize").click()
    # Authorized: the key's field gives way to a masked value.
    wait.until(lambda _: not dialog.find_elements(By.CSS_SELECTOR, ".auth-container input"))
    dialog.find_element(By.CSS_SELECTOR, "button.btn-done").click()
    wait.until(ec.invisibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))
    # The page's padlock is closed.
    browser.find_element(By.CSS_SELECTOR, ".auth-wrapper button.authorize.locked")


def _log(browser: Chrome, kind: str) -> list[dict[str, Any]]:
    """The entries of one of chromedriver's logs since the last read."""
    entries: list[dict[str, Any]] = browser.get_log(kind)  # type: ignore[no-untyped-call]
    return entries


def _other_hosts(browser: Chrome, web: str) -> list[str]:
    """Every URL the page asked for that is not on the service's host and port."""
    ours = urlsplit(web).netloc
    asked = []
    for entry in _log(browser, "performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            asked.append(message["params"]["request"]["url"])
    assert any(url.endswith("/openapi.json") for url in asked), asked
    return [url for url in asked if urlsplit(url).netloc != ours and not url.startswith("data:")]


def test_try_it_out_ends_contact_with_the_typed_key(
    browser: Chrome, web: str, caller: Caller, client: httpx.Client, tmp_path: Path
) -> None:
    document = client.get("/openapi.json").json()
    operations = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    wait: WebDriverWait[Chrome] = WebDriverWait(browser, STEP)

    browser.get(f"{web}/docs")
    wait.until(lambda page: _rendered_operations(page) == operations)
    # In the document's groups, in its order: none under "default".
    assert _rendered_tags(browser) == [tag["name"] for tag in document["tags"]]

    _authorize(browser, wait, caller.secret)
    operation = _operation(browser, "post", URL)
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    wait.until(lambda _: operation.find_element(By.CSS_SELECTOR, "button.try-out__btn")).click()
    body = wait.until(
        lambda _: operation.find_element(By.CSS_SELECTOR, "textarea.body-param__text")
    )
    body.send_keys(Keys.CONTROL, "a")
    body.send_keys(Keys.DELETE)
    body.send_keys(json.dumps({"phoneNumberList": NUMBERS, "reason": "tried on /docs"}))
    operation.find_element(By.CSS_SELECTOR, "button.execute").click()

    status = wait.until(
        lambda _: operation.find_element(
            By.CSS_SELECTOR, ".live-responses-table .response .response-col_status"
        )
    )
    assert status.text.strip() == "201"
    shown = operation.find_element(By.CSS_SELECTOR, ".live-responses-table .microlight").text
    assert json.loads(shown) == {"success": E164, "failure": []}
    # Under the key's own company and campaign: the service has it.
    for number in E164:
        assert client.get(lookup_path(number), headers=caller.headers).status_code == 200

    # The server response, where a reader looks for it.
    browser.execute_script(
        "arguments[0].scrollIntoView({block: 'start'})",
        operation.find_element(By.CSS_SELECTOR, ".body-param"),
    )
    shot = Path(os.environ.get(SCREENSHOT) or tmp_path / "docs-page.png")
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG")

    assert _other_hosts(browser, web) == []
    # No error in the console: the page's policy let through everything it needs (a
    # violation is logged as one), and every file and request succeeded.
    logged = _log(browser, "browser")
    assert [entry["message"] for entry in logged if entry["level"] == "SEVERE"] == []
