"""``engine.jetstream.connection``: how connection errors read and which ones are final."""

from __future__ import annotations

import ssl

import nats.errors
import pytest

from engine.jetstream.connection import NatsConnectError, NatsSettings, describe_error, is_refusal


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 4222)"), "connection refused"),
        (TimeoutError(), "timed out"),
        (nats.errors.Error("nats: 'Authorization Violation'"), "Authorization Violation"),
        (nats.errors.NoServersError(), "no servers available for connection"),
        (FileNotFoundError("the NATS credentials file 'x.creds' does not exist"),
         "the NATS credentials file 'x.creds' does not exist"),
        (ValueError("'mod' has no attribute 'Flow'"), "'mod' has no attribute 'Flow'"),
        (nats.errors.Error("nats: unknown\nprotocol  operation"), "unknown protocol operation"),
    ],
)
def test_describe_error_is_one_line(error: BaseException, line: str) -> None:
    assert describe_error(error) == line


@pytest.mark.parametrize(
    ("error", "final"),
    [
        (nats.errors.AuthorizationError(), True),
        (nats.errors.Error("nats: 'Authorization Violation'"), True),
        (nats.errors.Error("nats: 'User Authentication Expired'"), True),
        (nats.errors.Error("nats: 'user authentication revoked'"), True),
        (nats.errors.Error("nats: 'Account Authentication Expired'"), True),
        (ssl.SSLCertVerificationError("certificate verify failed"), True),
        (ConnectionRefusedError(), False),
        (TimeoutError(), False),
        (nats.errors.NoServersError(), False),
        (nats.errors.Error("nats: 'Permissions Violation for Publish to \"x\"'"), False),
    ],
)
def test_is_refusal_only_for_errors_another_attempt_cannot_mend(
    error: BaseException, final: bool
) -> None:
    assert is_refusal(error) is final


def test_connect_error_messages_name_the_url_and_the_cause() -> None:
    url = NatsSettings(url="nats://u:secret@a:4222, nats://b:4222").display_url
    assert url == "nats://a:4222,nats://b:4222"
    assert str(NatsConnectError(url, "connection refused", attempts=5, permanent=False)) == (
        "cannot connect to NATS at nats://a:4222,nats://b:4222 (tried 5 times): connection refused"
    )
    assert "tried once" in str(NatsConnectError(url, "timed out", attempts=1, permanent=False))
    assert str(NatsConnectError(url, "Authorization Violation", attempts=1, permanent=True)) == (
        "NATS at nats://a:4222,nats://b:4222 refused the connection: Authorization Violation"
    )
