"""NATS connection settings from the command line, the environment and the deployment file.

Every process command (``jetloom worker``, ``control-plane``, ``dev``) takes the same options; a
flag wins over its environment variable (Typer reads both into one value), which wins over the
deployment file's ``[nats]`` table, which wins over ``NatsSettings``' defaults. Worker processes
started by the launcher get the settings through these environment variables, so passwords and
tokens never appear on a command line (``ps`` shows those to every user of the machine).

=============================  ===========================  =========================
flag                           environment variable         ``[nats]`` key
=============================  ===========================  =========================
``--nats URL[,URL...]``        ``JETLOOM_NATS_URL``          ``url``
``--replicas N``               ``JETLOOM_REPLICAS``          ``replicas``
``--nats-user``                ``JETLOOM_NATS_USER``         ``user``
``--nats-password``            ``JETLOOM_NATS_PASSWORD``     ``password``
``--nats-token``               ``JETLOOM_NATS_TOKEN``        ``token``
``--nats-nkey FILE``           ``JETLOOM_NATS_NKEY``         ``nkey_seed_file``
``--nats-creds FILE``          ``JETLOOM_NATS_CREDS``        ``creds_file``
``--nats-tls-ca FILE``         ``JETLOOM_NATS_TLS_CA``       ``tls_ca_file``
``--nats-tls-cert FILE``       ``JETLOOM_NATS_TLS_CERT``     ``tls_cert_file``
``--nats-tls-key FILE``        ``JETLOOM_NATS_TLS_KEY``      ``tls_key_file``
``--connect-attempts N``       ``JETLOOM_CONNECT_ATTEMPTS``  ``connect_attempts``
``--connect-wait SECONDS``     ``JETLOOM_CONNECT_WAIT``      ``connect_wait_s``
=============================  ===========================  =========================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from engine.jetstream.connection import NatsSettings

__all__ = [
    "ENV",
    "ConnectAttempts",
    "ConnectWait",
    "NatsCreds",
    "NatsNkey",
    "NatsPassword",
    "NatsTlsCa",
    "NatsTlsCert",
    "NatsTlsKey",
    "NatsToken",
    "NatsUrl",
    "NatsUser",
    "Replicas",
    "PARAMS",
    "environ",
    "from_params",
    "given",
    "settings_from",
]

#: ``NatsSettings`` field → environment variable.
ENV: dict[str, str] = {
    "url": "JETLOOM_NATS_URL",
    "replicas": "JETLOOM_REPLICAS",
    "user": "JETLOOM_NATS_USER",
    "password": "JETLOOM_NATS_PASSWORD",
    "token": "JETLOOM_NATS_TOKEN",
    "nkey_seed_file": "JETLOOM_NATS_NKEY",
    "creds_file": "JETLOOM_NATS_CREDS",
    "tls_ca_file": "JETLOOM_NATS_TLS_CA",
    "tls_cert_file": "JETLOOM_NATS_TLS_CERT",
    "tls_key_file": "JETLOOM_NATS_TLS_KEY",
    "connect_attempts": "JETLOOM_CONNECT_ATTEMPTS",
    "connect_wait_s": "JETLOOM_CONNECT_WAIT",
}

_PANEL = "NATS connection"


def _option(flag: str, field: str, help: str, **kw: Any) -> Any:
    return typer.Option(flag, envvar=ENV[field], help=help, rich_help_panel=_PANEL, **kw)


NatsUrl = Annotated[
    str | None,
    _option("--nats", "url", "NATS server URL, or several comma-separated (a cluster's nodes). [default: nats://127.0.0.1:4222]"),
]
Replicas = Annotated[
    int | None,
    _option("--replicas", "replicas", "Replicas of the streams and KV buckets jetloom creates (3 on a 3-node cluster). [default: 1]", min=1, max=5),
]
NatsUser = Annotated[str | None, _option("--nats-user", "user", "NATS user.")]
NatsPassword = Annotated[
    str | None, _option("--nats-password", "password", "NATS password (prefer the environment variable).")
]
NatsToken = Annotated[
    str | None, _option("--nats-token", "token", "NATS token (prefer the environment variable).")
]
NatsNkey = Annotated[str | None, _option("--nats-nkey", "nkey_seed_file", "NKey seed file.")]
NatsCreds = Annotated[str | None, _option("--nats-creds", "creds_file", "NATS .creds file (JWT).")]
NatsTlsCa = Annotated[str | None, _option("--nats-tls-ca", "tls_ca_file", "CA file for the server's TLS certificate.")]
NatsTlsCert = Annotated[str | None, _option("--nats-tls-cert", "tls_cert_file", "TLS client certificate.")]
NatsTlsKey = Annotated[str | None, _option("--nats-tls-key", "tls_key_file", "TLS client key.")]
ConnectAttempts = Annotated[
    int | None,
    _option("--connect-attempts", "connect_attempts", "Start-up connection attempts before exiting 1. [default: 5]", min=1),
]
ConnectWait = Annotated[
    float | None,
    _option("--connect-wait", "connect_wait_s", "Seconds between start-up connection attempts. [default: 1]", min=0.0),
]


def settings_from(base: NatsSettings | None = None, **given: Any) -> NatsSettings:
    """``base`` (the deployment file's, or the defaults) with every ``given`` value that is not
    None (flags and environment variables, as Typer read them) put over it.

    Args:
        base: the settings to start from (default: ``NatsSettings()``).
        **given: ``NatsSettings`` fields.

    Raises:
        typer.BadParameter: the result is not valid (the message says why).
    """
    from engine.jetstream.connection import NatsSettings  # (loads nats-py: not at import, see cli)

    values = {k: v for k, v in given.items() if v is not None}
    try:
        return (base or NatsSettings()).replace(**values)
    except (ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc)) from None


#: A process command's parameter name → ``NatsSettings`` field.
PARAMS: dict[str, str] = {
    "nats_url": "url",
    "replicas": "replicas",
    "nats_user": "user",
    "nats_password": "password",
    "nats_token": "token",
    "nats_nkey": "nkey_seed_file",
    "nats_creds": "creds_file",
    "nats_tls_ca": "tls_ca_file",
    "nats_tls_cert": "tls_cert_file",
    "nats_tls_key": "tls_key_file",
    "connect_attempts": "connect_attempts",
    "connect_wait": "connect_wait_s",
}


def from_params(base: NatsSettings | None, params: dict[str, Any]) -> NatsSettings:
    """``settings_from(base, ...)`` with a command's parameters (named as in ``PARAMS``; other
    names are ignored), as Typer passed them.

    Raises:
        typer.BadParameter: the result is not valid.
    """
    return settings_from(base, **given(params))


def given(params: dict[str, Any]) -> dict[str, Any]:
    """The ``NatsSettings`` fields a command's parameters (named as in ``PARAMS``) set."""
    return {field: params[name] for name, field in PARAMS.items() if params.get(name) is not None}


def environ(settings: NatsSettings) -> dict[str, str]:
    """The environment variables that carry ``settings`` to a child process."""
    env = {}
    for field, var in ENV.items():
        value = getattr(settings, field)
        if value is not None:
            env[var] = str(value)
    return env
