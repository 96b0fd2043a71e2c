"""How a jetloom process reaches NATS: server URLs, credentials, TLS, and the replicas of what it
creates.

``NatsSettings`` is the one description of a connection that every process takes (worker, control
plane, ``NatsClient``, the CLI); ``services`` builds it from flags, environment variables and the
deployment file's ``[nats]`` table, and ``open_connection`` turns it into a nats-py client.

Credentials follow nats-py's own options (user/password, token, NKey seed file, ``.creds`` JWT
file, TLS with a CA and a client certificate); files are read by nats-py when it connects.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

import msgspec
import nats
from nats.aio.client import Client as NATS

__all__ = ["DEFAULT_URL", "NatsSettings", "open_connection"]

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
            never lowers an existing stream's replicas (``engine.log.jetstream``).
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


async def open_connection(settings: NatsSettings, *, name: str | None = None) -> NATS:
    """Connect to NATS as ``settings`` say; once connected, the client reconnects on its own
    (every 0.5 s, without limit) when a server goes away.

    Args:
        settings: servers and credentials.
        name: the client name the server shows in its connection list (``nats server report
            connections``), e.g. ``jetloom-worker``.

    Raises:
        FileNotFoundError: a credentials, key or certificate file named in ``settings`` is missing.
        nats.errors.NoServersError / OSError: no server could be reached.
    """
    return await nats.connect(
        **settings.connect_options(),
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
    )


def _must_exist(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"the NATS {what} {path!r} does not exist")


def _strip_userinfo(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url.rpartition("@")[2]
    return f"{scheme}://{rest.rpartition('@')[2]}"
