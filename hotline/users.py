"""Users and their bearer tokens (``hotline user add``, the demo, the tests)."""

from __future__ import annotations

from sqlalchemy import delete, select

from hotline.auth import hash_token, new_token
from hotline.config import Settings
from hotline.errors import ConfigError, HotlineError
from hotline.signin import hash_password
from hotline.storage.db import make_engine, make_sessionmaker
from hotline.storage.models import Elder, Provider, User, WebSession


async def add_user(
    settings: Settings,
    name: str,
    role: str,
    *,
    extension: str | None = None,
    elder_id: str | None = None,
    provider_id: str | None = None,
    password: str | None = None,
) -> str:
    """Create a user and return its bearer token (shown once; only the hash is stored).
    With ``password`` the user can also sign in to the console."""
    if role == "family" and not elder_id:
        raise ConfigError("a family user needs --elder ELDER_ID")
    if role == "provider" and not provider_id:
        raise ConfigError("a provider user needs --provider PROVIDER_ID")
    token = new_token()
    try:
        password_hash = hash_password(password) if password is not None else None
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            if await session.scalar(select(User.id).where(User.name == name)) is not None:
                raise HotlineError(f"user {name!r} already exists")
            if elder_id and await session.get(Elder, elder_id) is None:
                raise HotlineError(f"elder {elder_id} does not exist")
            if provider_id and await session.get(Provider, provider_id) is None:
                raise HotlineError(f"provider {provider_id} does not exist")
            session.add(
                User(
                    name=name,
                    role=role,
                    token_hash=hash_token(token),
                    password_hash=password_hash,
                    extension=extension,
                    elder_id=elder_id,
                    provider_id=provider_id,
                )
            )
    finally:
        await engine.dispose()
    return token


async def set_password(settings: Settings, name: str, password: str) -> None:
    """Set or change a user's console password; their open sessions end."""
    try:
        password_hash = hash_password(password)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            user = await session.scalar(select(User).where(User.name == name))
            if user is None:
                raise HotlineError(f"user {name!r} does not exist")
            user.password_hash = password_hash
            await session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    finally:
        await engine.dispose()
