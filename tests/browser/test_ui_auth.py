"""The web UI behind API tokens: the login cookie, redirects of pages, the cookie on the JSON API
only with ``HX-Request: true`` (CSRF), and the open-API banner without tokens."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.async_api import Page, expect

from services.control.auth import COOKIE, cookie_value
from tests.browser.conftest import Stack

FULL = "ui-test-token-full"
READER = "ui-test-token-reader"
NO_READ = "ui-test-token-runner"
SECURED = pytest.mark.parametrize(
    "stack", [{"tokens": {FULL: ["read", "run", "admin"], READER: ["read"], NO_READ: ["run"]}}], indirect=True
)


@SECURED
async def test_login_flow_then_a_run_started_through_the_api_with_the_cookie(stack: Stack, page: Page) -> None:
    await page.goto("/ui/workflows/Signup")
    await expect(page).to_have_url(f"{stack.url}/ui/login?next=/ui/workflows/Signup")
    await expect(page.locator(".banner")).to_have_count(0)  # not open

    await page.get_by_label("API token").fill("not-a-token")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_have_text("That token is not valid.")

    await page.get_by_label("API token").fill(FULL)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(f"{stack.url}/ui/workflows/Signup")  # back where it was going
    await expect(page.locator(".who .user")).to_have_text("token1")
    (cookie,) = await page.context.cookies()
    assert cookie["name"] == COOKIE and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert FULL not in await page.content()

    # the start form posts to the JSON API itself: htmx sends the cookie and HX-Request
    await page.locator("#start-name").fill("Grace")
    await page.locator("#start-age").fill("45")
    await page.get_by_role("button", name="Start").click()
    await expect(page).to_have_url(re.compile(r"/ui/runs/[A-Za-z0-9_-]+$"))
    run_id = page.url.rsplit("/", 1)[1]
    assert (await stack.client.handle(run_id, "Signup").result())["name"] == "Grace"

    await page.goto("/ui/")
    await expect(page.locator(f"#run-{run_id}")).to_be_visible()
    await page.get_by_role("button", name="Log out").click()
    await expect(page).to_have_url(f"{stack.url}/ui/login")
    assert await page.context.cookies() == []
    await page.goto("/ui/")
    await expect(page).to_have_url(re.compile(r"/ui/login\?next="))


@SECURED
async def test_the_cookie_opens_the_api_only_with_hx_request(stack: Stack) -> None:
    good = {"Cookie": f"{COOKIE}={cookie_value(READER)}"}
    htmx = {"HX-Request": "true"}
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        # pages: a redirect to the login (htmx: 401 and HX-Redirect), the page with the cookie
        resp = await http.get("/ui/?workflow=Signup")
        assert resp.status_code == 302 and resp.headers["location"] == "/ui/login?next=/ui%3Fworkflow%3DSignup"
        resp = await http.get("/ui/services", headers={"HX-Request": "true"})
        assert resp.status_code == 401 and resp.headers["hx-redirect"] == "/ui/login?next=/ui/services"
        resp = await http.get("/ui/runs/live")
        assert resp.status_code == 302
        resp = await http.get("/ui/services", headers=good)
        assert resp.status_code == 200 and "Services" in resp.text

        # the JSON API: the cookie alone is not enough (a cross-site form cannot add a header)
        resp = await http.get("/runs", headers=good)
        assert resp.status_code == 401 and resp.json()["status"] == 401
        resp = await http.get("/runs", headers={**good, **htmx})
        assert resp.status_code == 200, resp.text
        bad = {"Cookie": f"{COOKIE}={cookie_value('guess')}"}
        resp = await http.get("/runs", headers={**bad, **htmx})
        assert resp.status_code == 401
        resp = await http.get("/runs", headers={"Cookie": f"{COOKIE}=not*base64", **htmx})
        assert resp.status_code == 401
        # scopes still count: the reader's cookie cannot start a run
        resp = await http.post("/workflows/Signup/runs", json={"name": "x", "age": 1}, headers={**good, **htmx})
        assert resp.status_code == 403
        # a header token wins over the cookie
        resp = await http.get("/runs", headers={**good, **htmx, "Authorization": "Bearer nope"})
        assert resp.status_code == 401

        # a token without read: the page says so (403), it is not sent to the login again
        resp = await http.get("/ui/", headers={"Cookie": f"{COOKIE}={cookie_value(NO_READ)}"})
        assert resp.status_code == 403 and "lacks the &#39;read&#39; scope" in resp.text

        # the login form: the cookie's flags; never a redirect off the UI
        resp = await http.post("/ui/login", data={"token": READER, "next": "https://evil.example/"})
        assert resp.status_code == 303 and resp.headers["location"] == "/ui/"
        set_cookie = resp.headers["set-cookie"]
        assert "httponly" in set_cookie.lower() and "samesite=strict" in set_cookie.lower()
        assert READER not in set_cookie and f"{COOKIE}={cookie_value(READER)};" in set_cookie
        assert "Secure" not in set_cookie  # plain http here; Secure when served over https
        resp = await http.post("/ui/login", data={"token": READER}, headers={"X-Forwarded-Proto": "https"})
        assert "; Secure" in resp.headers["set-cookie"]  # behind a TLS proxy on this host
        http.cookies.clear()
        resp = await http.post("/ui/login", data={"token": READER, "next": "//evil.example/ui"})
        assert resp.headers["location"] == "/ui/"
        http.cookies.clear()
        resp = await http.post("/ui/login", data={"token": "wrong", "next": "/ui/services"})
        assert resp.status_code == 401 and "set-cookie" not in resp.headers


async def test_without_tokens_the_ui_is_open_and_says_so(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        resp = await http.get("/ui/")
        assert resp.status_code == 200 and "Open API" in resp.text
        resp = await http.get("/ui/login")
        assert resp.status_code == 302 and resp.headers["location"] == "/ui/"
        resp = await http.get("/")
        assert resp.status_code == 302 and resp.headers["location"] == "/ui/"
