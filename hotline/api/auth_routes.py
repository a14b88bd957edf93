"""Sign-in for the console: ``/api/v1/auth/login``, ``logout`` and ``me``.

A successful sign-in sets the session cookie (HttpOnly, SameSite=Strict) and answers the
CSRF token, which the console sends back in ``X-CSRF-Token`` on every write it makes with
the cookie. Bearer tokens keep working beside cookies and need no CSRF token: a browser
never attaches them by itself.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import select

from hotline.api.common import audit
from hotline.api.keys import SERVICES
from hotline.api.models import In
from hotline.api.registry import Api, model_response, principal
from hotline.auth import Principal
from hotline.core import vocab
from hotline.errors import AuthError, RateLimitedError
from hotline.signin import SESSION_COOKIE, SESSION_TTL, csrf_of, end_session, start_session, verify_password
from hotline.storage.models import User

api = Api()

# Where each role's console opens; the console refuses a role another role's views.
HOME: dict[str, str] = {
    vocab.Role.OPERATOR: "/console/",
    vocab.Role.DISPATCHER: "/console/",
    vocab.Role.SUPERVISOR: "/console/wallboard",
    vocab.Role.ADMIN: "/console/wallboard",
    vocab.Role.FAMILY: "/console/family",
    vocab.Role.PROVIDER: "/console/provider",
    vocab.Role.VENDOR: "/console/none",
}


class LoginIn(In):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class Me(BaseModel):
    id: str
    name: str
    role: vocab.Role
    extension: str | None
    elder_id: str | None
    provider_id: str | None


class SignedIn(BaseModel):
    """Who is signed in, where their console opens, and (for a cookie session) the CSRF token."""

    user: Me
    home: str
    csrf_token: str | None = Field(description="send it as X-CSRF-Token with cookie-authenticated writes")
    expires_at: datetime | None


class SignedOut(BaseModel):
    signed_out: bool


def _address(request: web.Request) -> str:
    # The peer, not X-Forwarded-For: a client could write any address there.
    return request.remote or "-"


@api.post("/api/v1/auth/login", response=SignedIn, public=True, errors=(401, 429), tag="auth")
async def login(request: web.Request, body: LoginIn) -> web.Response:
    """Sign in with a name and password; sets the session cookie."""
    svc = request.app[SERVICES]
    address = _address(request)
    wait = await svc.throttle.retry_after(body.username, address)
    if wait:
        raise RateLimitedError(f"too many failed sign-ins; try again in {wait} s", retry_after=wait)
    now = datetime.now(UTC)
    async with svc.sm() as session, session.begin():
        user = await session.scalar(select(User).where(User.name == body.username))
        # verify_password runs argon2 even for an unknown name (see hotline.signin).
        good = verify_password(user.password_hash if user else None, body.password)
        if user is None or not good or user.disabled:
            await svc.throttle.failed(body.username, address)
            raise AuthError("wrong user name or password")
        token, expires = await start_session(session, user, now)
        me = Me.model_validate(user, from_attributes=True)
        audit(session, Principal.of(user), "auth.login", "user", user.id, address=address)
    await svc.throttle.succeeded(body.username)
    response = model_response(SignedIn(user=me, home=HOME[me.role], csrf_token=csrf_of(token), expires_at=expires))
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_TTL.total_seconds()),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure or svc.settings.cookie_secure,
    )
    return response


@api.post("/api/v1/auth/logout", response=SignedOut, tag="auth")
async def logout(request: web.Request) -> web.Response:
    """End this browser's session (a bearer token stays valid) and clear the cookie."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        async with request.app[SERVICES].sm() as session, session.begin():
            await end_session(session, token)
    response = model_response(SignedOut(signed_out=bool(token)))
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


@api.get("/api/v1/auth/me", response=SignedIn, tag="auth")
async def me(request: web.Request) -> SignedIn:
    """The signed-in user; a console that reloads gets its CSRF token back here."""
    who = principal(request)
    token = request.cookies.get(SESSION_COOKIE) if not request.headers.get("Authorization") else None
    user = Me(
        id=who.user_id,
        name=who.name,
        role=vocab.Role(who.role),
        extension=who.extension,
        elder_id=who.elder_id,
        provider_id=who.provider_id,
    )
    return SignedIn(user=user, home=HOME[user.role], csrf_token=csrf_of(token) if token else None, expires_at=None)
