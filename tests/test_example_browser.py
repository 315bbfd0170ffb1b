"""
The example project in a real headless browser (Chromium through selenium),
against runserver (WSGI, the plain views) and uvicorn (ASGI, the async views).

Two browser instances with their own profiles play two devices of one user.
Cookie values are read from the browser and compared with the pages and with
the rows in the example's SQLite files.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.test_example_server import Server, example_copy, key_hash, run_server, skip_or_fail

try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait
except ImportError:  # reported by the chrome fixture, as a skip or a failure
    HAVE_SELENIUM = False
else:
    HAVE_SELENIUM = True

CHROMIUM = "/usr/bin/chromium"
WIDTH = 1280
WAIT = 15.0  # seconds for a page load; the machine may be busy


@pytest.fixture(scope="module")
def chrome_tools() -> tuple[str, str]:
    """The Chromium binary and its chromedriver, or a skip naming what is missing."""
    if not HAVE_SELENIUM:
        skip_or_fail("browser", "selenium is not installed")
    chromium = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if chromium is None:
        skip_or_fail("browser", f"chromium is not installed (no {CHROMIUM} or chromium on PATH)")
    chromedriver = shutil.which("chromedriver")
    if chromedriver is None:
        skip_or_fail("browser", "chromedriver is not installed (not on PATH)")
    return chromium, chromedriver


def start_chrome(chromium: str, chromedriver: str, profile: Path) -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},900",
    ):
        options.add_argument(argument)
    # An explicit driver path: selenium must never try to download one.
    return webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))


@pytest.fixture(scope="module")
def browsers(
    chrome_tools: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[WebDriver, WebDriver]]:
    """Two browsers with separate profiles, so separate cookies: two devices."""
    started: list[WebDriver] = []
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("SE_OFFLINE", "true")  # and no selenium manager downloads either
            for name in ("laptop", "phone"):
                started.append(start_chrome(*chrome_tools, tmp_path_factory.mktemp(name)))
        yield started[0], started[1]
    finally:
        for driver in started:
            driver.quit()


@pytest.fixture(scope="module")
def wsgi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server("wsgi", example_copy(tmp_path_factory, "wsgi")) as server:
        yield server


@pytest.fixture(scope="module")
def asgi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server("asgi", example_copy(tmp_path_factory, "asgi")) as server:
        yield server


@pytest.fixture(params=["wsgi", "asgi"])
def server(request: pytest.FixtureRequest) -> Server:
    """Each server in turn: the plain views under WSGI, the async ones under ASGI."""
    running: Server = request.getfixturevalue(f"{request.param}_server")
    return running


@pytest.fixture
def laptop(browsers: tuple[WebDriver, WebDriver]) -> WebDriver:
    return browsers[0]


@pytest.fixture
def phone(browsers: tuple[WebDriver, WebDriver]) -> WebDriver:
    return browsers[1]


def start_over(driver: WebDriver, server: Server) -> None:
    """Forget the cookies of earlier tests (both servers share the host 127.0.0.1)."""
    # Cookies can only be deleted from a page of their site; the login page
    # saves no session.
    driver.get(server.url + "/admin/login/")
    driver.delete_all_cookies()


def click_through(driver: WebDriver, element: WebElement) -> None:
    """Click a link or button and wait for the page it leads to."""
    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    wait_for_page(driver, page)


def wait_for_page(driver: WebDriver, old_page: WebElement) -> None:
    """Wait until old_page is replaced and its successor has loaded."""
    # Polled often: the default half second would be most of each test's
    # time. A script can meet the document being replaced; ask again then.
    wait = WebDriverWait(
        driver, WAIT, poll_frequency=0.02, ignored_exceptions=[WebDriverException]
    )
    wait.until(expected_conditions.staleness_of(old_page))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def path(driver: WebDriver) -> str:
    return urlsplit(driver.current_url).path


def visits(driver: WebDriver) -> int:
    return int(driver.find_element(By.ID, "visits").text)


def session_cookie(driver: WebDriver) -> str:
    cookie = driver.get_cookie("sessionid")
    assert cookie is not None, "no session cookie"
    value: str = cookie["value"]
    return value


def listed_sessions(driver: WebDriver) -> set[str]:
    inputs = driver.find_elements(By.CSS_SELECTOR, 'input[name="session"]')
    return {str(element.get_attribute("value")) for element in inputs}


def fits_the_window(driver: WebDriver) -> bool:
    return bool(
        driver.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1"
        )
    )


def table_fits(driver: WebDriver, box: str = ".table-wrap") -> bool:
    """Whether the table in `box` needs no scrolling of its own at this width."""
    return bool(
        driver.execute_script(
            "const wrap = document.querySelector(arguments[0]);"
            "return wrap.scrollWidth <= wrap.clientWidth + 1",
            box,
        )
    )


def log_in(server: Server, next_path: str, *drivers: WebDriver) -> None:
    """
    Log the browsers in through the admin's form, all at once: each login
    spends about a second hashing the password, and the servers hash
    concurrent logins in parallel.
    """
    login_pages = []
    for driver in drivers:
        driver.get(f"{server.url}/admin/login/?{urlencode({'next': next_path})}")
        driver.find_element(By.NAME, "username").send_keys("admin")
        driver.find_element(By.NAME, "password").send_keys("admin")
        login_pages.append(driver.find_element(By.TAG_NAME, "html"))
    for driver in drivers:
        driver.find_element(By.CSS_SELECTOR, '#login-form [type="submit"]').click()
    for driver, login_page in zip(drivers, login_pages, strict=True):
        wait_for_page(driver, login_page)
        assert path(driver) == next_path


def test_counter(laptop: WebDriver, server: Server) -> None:
    start_over(laptop, server)
    laptop.get(server.url + server.prefix + "/")
    key = session_cookie(laptop)
    assert visits(laptop) == 1
    # On the first visit already: the end of the key the browser holds.
    assert laptop.find_element(By.ID, "key-end").text == "…" + key[-6:]
    click_through(laptop, laptop.find_element(By.ID, "again"))
    click_through(laptop, laptop.find_element(By.ID, "again"))
    assert visits(laptop) == 3
    assert session_cookie(laptop) == key
    assert server.session_users()[key_hash(key)] is None
    assert fits_the_window(laptop)


def test_regenerate(laptop: WebDriver, server: Server) -> None:
    start_over(laptop, server)
    laptop.get(server.url + server.prefix + "/")
    click_through(laptop, laptop.find_element(By.ID, "again"))
    old_key = session_cookie(laptop)
    click_through(laptop, laptop.find_element(By.ID, "regenerate"))
    new_key = session_cookie(laptop)
    assert new_key != old_key
    # Back on the counter of the same kind of views, one visit further.
    assert path(laptop) == server.prefix + "/"
    assert visits(laptop) == 3
    assert laptop.find_element(By.ID, "key-end").text == "…" + new_key[-6:]
    stored = server.session_users()
    assert key_hash(new_key) in stored
    assert key_hash(old_key) not in stored


def test_remove(laptop: WebDriver, server: Server) -> None:
    start_over(laptop, server)
    laptop.get(server.url + server.prefix + "/")
    click_through(laptop, laptop.find_element(By.ID, "again"))
    old_key = session_cookie(laptop)
    click_through(laptop, laptop.find_element(By.ID, "remove"))
    assert path(laptop) == server.prefix + "/"
    assert visits(laptop) == 1
    new_key = session_cookie(laptop)
    assert new_key != old_key
    stored = server.session_users()
    assert key_hash(old_key) not in stored
    assert key_hash(new_key) in stored


def test_log_in_look_around_and_log_out(laptop: WebDriver, wsgi_server: Server) -> None:
    # One journey rather than a test per page: each login costs a second
    # of password hashing.
    server = wsgi_server
    start_over(laptop, server)
    laptop.get(server.url + "/")
    anonymous_key = session_cookie(laptop)
    click_through(laptop, laptop.find_element(By.ID, "login"))
    assert path(laptop) == "/admin/login/"
    assert parse_qs(urlsplit(laptop.current_url).query) == {"next": ["/"]}
    laptop.find_element(By.NAME, "username").send_keys("admin")
    laptop.find_element(By.NAME, "password").send_keys("admin")
    click_through(laptop, laptop.find_element(By.CSS_SELECTOR, '#login-form [type="submit"]'))
    assert path(laptop) == "/"
    key = session_cookie(laptop)
    assert key != anonymous_key
    assert server.session_users()[key_hash(key)] == server.admin_id()
    assert laptop.find_element(By.CSS_SELECTOR, "header .who").text == "admin"

    click_through(laptop, laptop.find_element(By.LINK_TEXT, "Your sessions"))
    assert path(laptop) == "/sessions/"
    [current] = laptop.find_elements(By.CSS_SELECTOR, "tr.session.current")
    device = current.find_element(By.CSS_SELECTOR, "td.device")
    user_agent = laptop.execute_script("return navigator.userAgent")
    # Named by ua-parser (a test requirement), and guessed alike without it.
    assert re.fullmatch(r"HeadlessChrome \d+ on Linux", device.text), device.text
    assert device.get_attribute("title") == user_agent
    assert current.find_element(By.CSS_SELECTOR, ".badge").text == "this browser"
    expires = current.find_element(By.CSS_SELECTOR, "td.expires").text
    assert re.fullmatch(r"in (1 week, 6 days|2 weeks)", expires), expires
    assert fits_the_window(laptop)
    assert table_fits(laptop)

    # The package's admin: its session list, as wide as its columns make it.
    click_through(laptop, laptop.find_element(By.LINK_TEXT, "Admin"))
    changelist = laptop.find_element(By.CSS_SELECTOR, '#content-main a[href$="/session/"]')
    click_through(laptop, changelist)
    assert path(laptop) == "/admin/django_sql_sessions/session/"
    rows = laptop.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    shown = {row.find_element(By.CSS_SELECTOR, ".field-short_id").text for row in rows}
    assert shown == {digest[:12] for digest in server.session_users()}
    # This browser's row says what "your sessions" says, and links its user.
    [mine] = [
        row
        for row in rows
        if row.find_element(By.CSS_SELECTOR, ".field-short_id").text == key_hash(key)[:12]
    ]
    assert mine.find_element(By.CSS_SELECTOR, ".field-expires").text == expires
    user = mine.find_element(By.CSS_SELECTOR, ".field-user a")
    assert user.text == "admin"
    assert urlsplit(str(user.get_attribute("href"))).path == (
        f"/admin/auth/user/{server.admin_id()}/change/"
    )
    # Headless Chrome's user agent, in this browser's row, is long enough to
    # push a careless table off the page.
    assert len(user_agent) > 100
    assert laptop.execute_script("return window.innerWidth") == WIDTH
    assert fits_the_window(laptop), laptop.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]"
    )
    # Django's admin scrolls a wide result table inside its own box, which
    # hides columns instead of widening the page: that box must not scroll.
    assert table_fits(laptop, ".results"), laptop.execute_script(
        "const box = document.querySelector('.results');return [box.scrollWidth, box.clientWidth]"
    )
    # Its page: every date as the admin formats dates, none as Python prints it.
    click_through(laptop, mine.find_element(By.CSS_SELECTOR, ".field-short_id a"))
    readonly = {
        field: laptop.find_element(By.CSS_SELECTOR, f".field-{field} .readonly").text
        for field in ("user", "created_at", "last_activity", "expire_date")
    }
    assert readonly["user"] == "admin"
    for field in ("created_at", "last_activity", "expire_date"):
        assert not re.search(r"\d{4}-\d\d-\d\d", readonly[field]), readonly
        assert re.fullmatch(r"\w+\.? \d+, \d{4}, .+", readonly[field]), readonly
    assert fits_the_window(laptop)

    laptop.get(server.url + "/")
    click_through(laptop, laptop.find_element(By.ID, "logout"))
    assert path(laptop) == "/"
    assert laptop.find_element(By.ID, "login").text == "Log in"
    assert key_hash(key) not in server.session_users()


def test_two_browsers_see_and_revoke_each_other(
    laptop: WebDriver, phone: WebDriver, server: Server
) -> None:
    sessions_path = server.prefix + "/sessions/"
    for driver in (laptop, phone):
        start_over(driver, server)
    log_in(server, sessions_path, laptop, phone)
    laptop_id, phone_id = key_hash(session_cookie(laptop)), key_hash(session_cookie(phone))
    # The two logins ran at once, so either page may have been drawn before
    # the other browser's session was saved: draw both again.
    laptop.refresh()
    phone.refresh()
    stored = server.admin_sessions()
    assert {laptop_id, phone_id} <= stored
    assert listed_sessions(laptop) == stored - {laptop_id}
    assert listed_sessions(phone) == stored - {phone_id}
    assert fits_the_window(laptop)
    assert table_fits(laptop)

    phone_row = laptop.find_element(By.CSS_SELECTOR, f'input[name="session"][value="{phone_id}"]')
    log_out = phone_row.find_element(By.XPATH, "./ancestor::form//button")
    # The package's page (django_sql_sessions.urls in the example's look):
    # a screen reader hears which device each button logs out.
    assert re.fullmatch(
        r"Log out HeadlessChrome \d+ on Linux, last active \d+\sminutes? ago",
        log_out.accessible_name,
    ), log_out.accessible_name
    assert laptop.find_element(By.TAG_NAME, "h1").text == "Your sessions"
    click_through(laptop, log_out)
    assert path(laptop) == sessions_path
    assert laptop.find_element(By.CSS_SELECTOR, ".message").text == "That session is logged out."
    assert phone_id not in listed_sessions(laptop)
    assert phone_id not in server.session_users()

    # The phone's next request finds its session gone: back to the login page.
    phone.refresh()
    assert path(phone) == "/admin/login/"
    assert parse_qs(urlsplit(phone.current_url).query) == {"next": [sessions_path]}
    laptop.refresh()
    assert path(laptop) == sessions_path
