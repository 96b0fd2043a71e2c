"""How a jetloom process reaches NATS: server URLs, credentials, TLS, and the replicas of what it
creates.

``NatsSettings`` is the one description of a connection that every process takes (worker, control
plane, ``NatsClient``, the CLI); ``services`` builds it from flags, environment variables and the
deployment file's ``[nats]`` table, and ``open_connection`` turns it into a nats-py client: bounded
attempts at start-up (``NatsConnectError``), one log line per event instead of nats-py's traceback
per error, and ``connection_closed(nc)`` for the owner of a connection that nats-py gave up on.

Errors::

    ConnectionError
     ├── NatsConnectError        start-up failed: unreachable after every attempt, or refused
     └── NatsConnectionClosed    (the result of ``connection_closed``) closed for good

Credentials follow nats-py's own options (user/password, token, NKey seed file, ``.creds`` JWT
file, TLS with a CA and a client certificate); files are read by nats-py when it connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import weakref
from typing import Any

import msgspec
import tenacity
from nats.aio.client import Client as NATS
from nats.errors import AuthorizationError
from nats.errors import Error as NatsError

__all__ = [
    "CLIENT_ERRORS",
    "DEFAULT_URL",
    "NatsConnectError",
    "NatsConnectionClosed",
    "NatsSettings",
    "connection_closed",
    "describe_error",
    "is_refusal",
    "open_connection",
]

logger = logging.getLogger("jetloom.nats")

#: The NATS client's own errors (a refused request, a closed connection, a bad reply): with
#: ``ConnectionError``, what a process command reports in one line rather than a traceback.
CLIENT_ERRORS: tuple[type[BaseException], ...] = (NatsError,)

#: The server a process connects to when none is named.
DEFAULT_URL = "nats://127.0.0.1:4222"
MAX_REPLICAS = 5  # JetStream's own limit on a stream's replicas

_SECRET_FIELDS = frozenset({"password", "token"})


class NatsSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """A NATS connection and the replication of the streams and buckets jetloom creates on it.

    Attributes:
        url: one server URL or several, comma-separated (``nats://a:4222,nats://b:4222``); the
            client picks among them and moves to another when one goes away. Default
            ``nats://127.0.0.1:4222``.
        replicas: replicas of every stream and KV bucket jetloom creates (1–5, default 1). Set-up
            never lowers an existing stream's replicas (``engine.jetstream.log``).
        user / password: user and password authentication (``password`` needs ``user``).
        token: token authentication.
        nkey_seed_file: path of an NKey seed file (``SU...``).
        creds_file: path of a ``.creds`` file (user JWT and NKey seed), as the ``nats`` CLI and
            ``nsc`` write them.
        tls_ca_file: CA bundle that signed the server's certificate (TLS is used when this or a
            ``tls://`` URL is given).
        tls_cert_file / tls_key_file: client certificate and key (mutual TLS).
        connect_attempts: how many times start-up tries to connect before giving up (default 5).
        connect_wait_s: seconds between start-up attempts (default 1.0).

    Raises:
        ValueError: on construction, for a value out of range or a half-given pair.
    """

    url: str = DEFAULT_URL
    replicas: int = 1
    user: str | None = None
    password: str | None = None
    token: str | None = None
    nkey_seed_file: str | None = None
    creds_file: str | None = None
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    connect_attempts: int = 5
    connect_wait_s: float = 1.0

    def __post_init__(self) -> None:
        if self.url is not None and not self.servers:  # (None: a subclass's "not set")
            raise ValueError("no NATS server URL given")
        if not 1 <= self.replicas <= MAX_REPLICAS:
            raise ValueError(f"replicas must be between 1 and {MAX_REPLICAS}, got {self.replicas}")
        if self.connect_attempts < 1:
            raise ValueError(f"connect_attempts must be >= 1, got {self.connect_attempts}")
        if self.connect_wait_s < 0:
            raise ValueError(f"connect_wait_s must be >= 0, got {self.connect_wait_s}")
        if self.password is not None and self.user is None:
            raise ValueError("a NATS password needs a user")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("a TLS client certificate needs its key, and the key its certificate")
        if self.nkey_seed_file is not None and self.creds_file is not None:
            raise ValueError("give an NKey seed file or a .creds file, not both")

    def __repr__(self) -> str:  # secrets never reach a log line or a traceback
        shown = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value is not None and name in _SECRET_FIELDS:
                value = "***"
            shown.append(f"{name}={value!r}")
        return f"NatsSettings({', '.join(shown)})"

    __str__ = __repr__

    @property
    def servers(self) -> list[str]:
        """The server URLs, in the order given."""
        return [u.strip() for u in (self.url or "").split(",") if u.strip()]

    @property
    def display_url(self) -> str:
        """The URLs without any user information, for log lines."""
        return ",".join(_strip_userinfo(u) for u in self.servers)

    def replace(self, **changes: Any) -> NatsSettings:
        """A copy with ``changes`` applied (validated again)."""
        return msgspec.structs.replace(self, **changes)

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect`` (nats-py) carrying the servers and credentials.

        Raises:
            FileNotFoundError: a named credentials, key or certificate file does not exist.
            ssl.SSLError: a TLS file is not a valid certificate or key.
        """
        options: dict[str, Any] = {"servers": self.servers}
        if self.user is not None:
            options["user"] = self.user
        if self.password is not None:
            options["password"] = self.password
        if self.token is not None:
            options["token"] = self.token
        if self.nkey_seed_file is not None:
            _must_exist(self.nkey_seed_file, "NKey seed file")
            options["nkeys_seed"] = self.nkey_seed_file
        if self.creds_file is not None:
            _must_exist(self.creds_file, "credentials file")
            options["user_credentials"] = self.creds_file
        if self.tls_ca_file is not None or self.tls_cert_file is not None or any(
            u.startswith("tls://") for u in self.servers
        ):
            options["tls"] = self.tls_context()
        return options

    def tls_context(self) -> ssl.SSLContext:
        """A client TLS context verifying the server against ``tls_ca_file`` (else the system's
        CAs) and presenting the client certificate when one is given."""
        if self.tls_ca_file is not None:
            _must_exist(self.tls_ca_file, "TLS CA file")
        context = ssl.create_default_context(cafile=self.tls_ca_file)
        if self.tls_cert_file is not None and self.tls_key_file is not None:
            _must_exist(self.tls_cert_file, "TLS certificate file")
            _must_exist(self.tls_key_file, "TLS key file")
            context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        return context


class NatsConnectError(ConnectionError):
    """Start-up could not connect to NATS: the servers stayed unreachable for every attempt, or
    one of them refused the credentials (then at once, without further attempts).

    Attributes:
        url: the server URLs, without credentials (``NatsSettings.display_url``).
        cause: why the last attempt failed, one line (e.g. ``connection refused``).
        attempts: how many attempts were made.
        permanent: True when another attempt could not succeed (credentials refused, TLS
            verification failed, a bad key file).
    """

    def __init__(self, url: str, cause: str, *, attempts: int, permanent: bool) -> None:
        self.url, self.cause, self.attempts, self.permanent = url, cause, attempts, permanent
        if permanent:
            text = f"NATS at {url} refused the connection: {cause}"
        else:
            times = "once" if attempts == 1 else f"{attempts} times"
            text = f"cannot connect to NATS at {url} (tried {times}): {cause}"
        super().__init__(text)


class NatsConnectionClosed(ConnectionError):
    """nats-py closed a connection for good (it no longer reconnects): after a server ``-ERR``
    (e.g. ``Maximum Control Line Exceeded``, ``Authorization Violation``), expired credentials,
    or on a deliberate ``close()``.

    Attributes:
        url: the server URLs, without credentials.
        cause: the connection's last error, one line (``closed`` when there was none).
    """

    def __init__(self, url: str, cause: str) -> None:
        self.url, self.cause = url, cause
        super().__init__(f"the NATS connection to {url} was closed: {cause}")


#: Server errors after which connecting again with the same credentials cannot succeed.
_REFUSALS = (
    "authorization violation",
    "authentication expired",
    "authentication revoked",
    "account authentication expired",
)

_closed_futures: weakref.WeakKeyDictionary[NATS, asyncio.Future[NatsConnectionClosed]] = (
    weakref.WeakKeyDictionary()
)


def describe_error(exc: BaseException) -> str:
    """One line for a connection error, without a traceback (e.g. ``connection refused``)."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    text = " ".join(str(exc).split()) or type(exc).__name__
    if text.startswith("nats: "):  # nats-py's errors, some with the server's quoted -ERR text
        text = text.removeprefix("nats: ")
        if len(text) > 1 and text[0] == text[-1] == "'":
            text = text[1:-1]
    return text


def is_refusal(exc: BaseException) -> bool:
    """Whether ``exc`` says the server refused these credentials (or TLS failed), so that
    another attempt with the same settings cannot succeed."""
    if isinstance(exc, AuthorizationError | ssl.SSLError):
        return True
    text = str(exc).lower()
    return any(r in text for r in _REFUSALS)


async def open_connection(settings: NatsSettings, *, name: str | None = None) -> NATS:
    """Connect to NATS as ``settings`` say, with bounded attempts at start-up.

    Start-up makes up to ``settings.connect_attempts`` attempts, ``settings.connect_wait_s``
    apart; an attempt tries each server URL once. Each failed attempt logs one WARNING line
    (``jetloom.nats``: the URLs without credentials and the cause). Refused credentials (an
    authorization violation, expired or revoked credentials), a TLS failure or an unreadable key
    fail at once.

    Once connected, the client reconnects on its own (every 0.5 s, without limit) when a server
    goes away, logging one line when the connection is lost, one per distinct error while it
    reconnects, and one when it is back. A reconnect that the server refuses (the credentials
    were revoked meanwhile) closes the connection, since no later attempt can succeed either.
    ``connection_closed(nc)`` tells when nats-py has closed the connection for good, so that
    its owner can rebuild it or exit.

    Args:
        settings: servers, credentials, start-up attempts.
        name: the client name the server shows in its connection list (``nats server report
            connections``), e.g. ``jetloom-worker``.

    Raises:
        FileNotFoundError: a credentials, key or certificate file named in ``settings`` is missing.
        NatsConnectError: every attempt failed, or the server refused the connection.
    """
    options = settings.connect_options()
    url = settings.display_url
    attempts = 0

    async def attempt() -> NATS:
        nonlocal attempts
        attempts += 1
        try:
            return await _attempt(options, settings, name)
        except _Refused as exc:
            raise NatsConnectError(url, exc.cause, attempts=attempts, permanent=True) from None
        except _Unreachable as exc:
            left = settings.connect_attempts - attempts
            then = f"; again in {settings.connect_wait_s:g} s" if left else ""
            logger.warning(
                "NATS connect attempt %d/%d to %s failed: %s%s",
                attempts,
                settings.connect_attempts,
                url,
                exc.cause,
                then,
            )
            raise

    try:
        async for try_ in tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(settings.connect_attempts),
            wait=tenacity.wait_fixed(settings.connect_wait_s),
            retry=tenacity.retry_if_exception_type(_Unreachable),
            reraise=True,
        ):
            with try_:
                nc = await attempt()
    except _Unreachable as exc:
        raise NatsConnectError(url, exc.cause, attempts=attempts, permanent=False) from None
    return nc


def connection_closed(nc: NATS) -> asyncio.Future[NatsConnectionClosed]:
    """A future that resolves when nats-py closes ``nc`` for good, with the reason.

    It resolves on a deliberate ``close()``/``drain()`` too: its owner waits on it beside its
    own stop signal and tells the two apart itself.

    Raises:
        KeyError: ``nc`` was not opened by ``open_connection``.
    """
    return _closed_futures[nc]


class _Unreachable(Exception):
    def __init__(self, cause: str) -> None:
        self.cause = cause


class _Refused(Exception):
    def __init__(self, cause: str) -> None:
        self.cause = cause


class _Callbacks:
    """nats-py's callbacks for one connection: quiet one-line logs instead of its default
    traceback per error, the end of a start-up attempt, and the closed future."""

    def __init__(self, nc: NATS, settings: NatsSettings, name: str | None) -> None:
        loop = asyncio.get_running_loop()
        self.nc = nc
        self.url = settings.display_url
        self.who = name or "client"
        self.servers = len(settings.servers)
        self.connecting = True
        self.errors: list[BaseException] = []
        self.failed: asyncio.Future[BaseException] = loop.create_future()
        self.closed_future: asyncio.Future[NatsConnectionClosed] = loop.create_future()
        self._logged: set[str] = set()  # errors already logged since the last reconnect
        self._closing: asyncio.Task[None] | None = None

    async def error(self, exc: Exception) -> None:
        if self.connecting:  # a start-up attempt: one server failed
            self.errors.append(exc)
            if (is_refusal(exc) or len(self.errors) >= self.servers) and not self.failed.done():
                self.failed.set_result(exc)
            return
        text = describe_error(exc)
        if text in self._logged:
            logger.debug("NATS %s: %s", self.who, text)
            return
        self._logged.add(text)
        logger.warning("NATS %s (%s): %s", self.who, self.url, text)
        if is_refusal(exc) and not self.nc.is_closed and self._closing is None:
            # a reconnect refused (credentials revoked or expired meanwhile): nats-py would try
            # again forever; closed, the connection's owner rebuilds it or exits
            self._closing = asyncio.create_task(self.nc.close())

    async def disconnected(self) -> None:
        if self.nc.is_reconnecting:  # (also called on close, which the owner reports)
            logger.warning("NATS %s lost its connection to %s; reconnecting", self.who, self.url)

    async def reconnected(self) -> None:
        self._logged.clear()
        server = self.nc.connected_url
        where = f"{server.hostname}:{server.port}" if server is not None else self.url
        logger.warning("NATS %s reconnected to %s", self.who, where)

    async def closed(self) -> None:
        if self.connecting or self.closed_future.done():
            return
        err = self.nc.last_error
        cause = describe_error(err) if err is not None else "closed"
        self.closed_future.set_result(NatsConnectionClosed(self.url, cause))


async def _attempt(options: dict[str, Any], settings: NatsSettings, name: str | None) -> NATS:
    """One start-up attempt: each server once. nats-py's own ``connect`` would go round the
    servers forever (it calls ``error_cb`` after each failure), so the attempt ends when every
    server has failed once, or one refused the credentials, and the connect is cancelled."""
    nc = NATS()
    cbs = _Callbacks(nc, settings, name)
    connect = asyncio.create_task(
        nc.connect(
            **options,
            name=name,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,  # type: ignore[arg-type]  # annotated int; nats-py sleeps this many seconds, a float works
            error_cb=cbs.error,
            disconnected_cb=cbs.disconnected,
            reconnected_cb=cbs.reconnected,
            closed_cb=cbs.closed,
        )
    )
    try:
        waiting: set[asyncio.Future[Any]] = {connect, cbs.failed}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        connect.cancel()
        with contextlib.suppress(BaseException):
            await nc.close()
        raise
    if connect.done() and connect.exception() is None:
        cbs.connecting = False
        _closed_futures[nc] = cbs.closed_future
        return nc
    connect.cancel()
    with contextlib.suppress(BaseException):
        await connect
    with contextlib.suppress(Exception):
        await nc.close()
    if cbs.failed.done():
        exc: BaseException = cbs.failed.result()
    else:
        exc = connect.exception() or RuntimeError("connect ended without a connection")
        if not isinstance(exc, OSError | NatsError):  # a bad key file, an invalid option
            raise _Refused(describe_error(exc))
    if is_refusal(exc):
        raise _Refused(describe_error(exc))
    raise _Unreachable(describe_error(exc))


def _must_exist(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"the NATS {what} {path!r} does not exist")


def _strip_userinfo(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url.rpartition("@")[2]
    return f"{scheme}://{rest.rpartition('@')[2]}"
