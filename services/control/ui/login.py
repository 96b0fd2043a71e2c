"""The web UI's login: ``GET /ui/login`` (a form: paste an API token), ``POST /ui/login`` (sets
the HttpOnly login cookie, ``services.control.auth.COOKIE``) and ``POST /ui/logout`` (clears
it). Without tokens configured there is nothing to log in to: the login page redirects to the
runs list."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.datastructures import Cookie
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery
from litestar.response import Redirect, Template

from ..auth import COOKIE, PUBLIC, cookie_value
from .pages import LOGIN_PATH, UI_PATH, page, ui_auth

__all__ = ["LoginController", "safe_next"]


def safe_next(target: str | None) -> str:
    """Where to go after logging in: ``target`` when it is a path of the UI (never another
    site: no scheme, no ``//``), else the runs list."""
    if target and target.startswith(UI_PATH) and not target.startswith("//") and "\\" not in target:
        return target
    return f"{UI_PATH}/"


class LoginController(Controller):
    """Log in and out of the web UI."""

    path = UI_PATH
    include_in_schema = False

    @get("/login", opt=PUBLIC)
    async def login_form(self, request: Request[Any, Any, Any], next: FromQuery[str | None] = None) -> Template | Redirect:
        """The form; straight to ``next`` when no token is configured."""
        if ui_auth(request) is None:
            return Redirect(safe_next(next))
        return page(request, "login.html", next=safe_next(next), failed=False)

    @post("/login", opt=PUBLIC, status_code=303)
    async def login(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Template | Redirect:
        """Check the token pasted in the form; when valid, set the cookie and go to ``next``."""
        auth = ui_auth(request)
        target = safe_next(data.get("next"))
        if auth is None:
            return Redirect(target, status_code=303)
        token = (data.get("token") or "").strip()
        if not token or auth.from_cookie(cookie_value(token)) is None:
            return page(request, "login.html", status_code=401, next=target, failed=True)
        cookie = Cookie(
            key=COOKIE,
            value=cookie_value(token),
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return Redirect(target, status_code=303, cookies=[cookie])

    @post("/logout", opt=PUBLIC, status_code=303)
    async def logout(self) -> Redirect:
        """Clear the cookie; back to the login page."""
        gone = Cookie(key=COOKIE, value="", path="/", max_age=0, httponly=True, samesite="strict")
        return Redirect(LOGIN_PATH, status_code=303, cookies=[gone])
