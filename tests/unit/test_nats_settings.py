"""NatsSettings and how the process commands build them (flags and environment over the
deployment file over the defaults)."""

from __future__ import annotations

import ssl
import tomllib

import msgspec
import pytest
import typer

from engine.jetstream.connection import NatsSettings
from services.launcher import Deployment
from services.nats_options import ENV, PARAMS, environ, from_params, given, settings_from


def test_servers_split_on_commas_and_display_without_credentials() -> None:
    s = NatsSettings(url=" nats://u:pw@a:4222 ,nats://b:4223,, tls://c:4224 ")
    assert s.servers == ["nats://u:pw@a:4222", "nats://b:4223", "tls://c:4224"]
    assert s.display_url == "nats://a:4222,nats://b:4223,tls://c:4224"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": " , "}, "no NATS server URL"),
        ({"replicas": 0}, "replicas must be between 1 and 5"),
        ({"replicas": 6}, "replicas must be between 1 and 5"),
        ({"connect_attempts": 0}, "connect_attempts"),
        ({"connect_wait_s": -1.0}, "connect_wait_s"),
        ({"password": "pw"}, "needs a user"),
        ({"tls_cert_file": "c.pem"}, "needs its key"),
        ({"tls_key_file": "k.pem"}, "needs its key"),
        ({"nkey_seed_file": "a", "creds_file": "b"}, "not both"),
    ],
)
def test_invalid_settings_say_why(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NatsSettings(**fields)  # type: ignore[arg-type]


def test_secrets_never_reach_repr_or_str() -> None:
    s = NatsSettings(user="svc", password="hunter2", token="t0ken")
    for text in (repr(s), str(s), f"{s}", f"{[s]}"):
        assert "hunter2" not in text and "t0ken" not in text
        assert "user='svc'" in text


def test_connect_options_carry_servers_and_credentials(tmp_path) -> None:
    seed = tmp_path / "user.nk"
    seed.write_text("SU...")
    s = NatsSettings(url="nats://a:1,nats://b:2", user="u", password="p", nkey_seed_file=str(seed))
    opts = s.connect_options()
    assert opts["servers"] == ["nats://a:1", "nats://b:2"]
    assert (opts["user"], opts["password"], opts["nkeys_seed"]) == ("u", "p", str(seed))
    assert "tls" not in opts and "token" not in opts


def test_a_missing_credentials_file_is_named() -> None:
    with pytest.raises(FileNotFoundError, match="credentials file '/nonexistent/x.creds'"):
        NatsSettings(creds_file="/nonexistent/x.creds").connect_options()


def test_tls_urls_get_a_verifying_context() -> None:
    opts = NatsSettings(url="tls://a:4222").connect_options()
    assert isinstance(opts["tls"], ssl.SSLContext)
    assert opts["tls"].verify_mode == ssl.CERT_REQUIRED


def test_given_values_win_over_the_base_and_none_means_not_given() -> None:
    base = NatsSettings(url="nats://file:1", replicas=3, user="fromfile")
    got = settings_from(base, url="nats://flag:2", replicas=None, user=None)
    assert (got.url, got.replicas, got.user) == ("nats://flag:2", 3, "fromfile")


def test_an_invalid_combination_is_a_bad_parameter() -> None:
    with pytest.raises(typer.BadParameter, match="replicas"):
        settings_from(None, replicas=7)


def test_every_setting_has_a_flag_and_an_environment_variable() -> None:
    fields = set(NatsSettings.__struct_fields__)
    assert set(ENV) == fields
    assert set(PARAMS.values()) == fields


def test_environment_carries_the_settings_to_a_child_process() -> None:
    s = NatsSettings(url="nats://a:1,nats://b:2", replicas=3, token="tok", connect_wait_s=0.5)
    env = environ(s)
    assert env["JETLOOM_NATS_URL"] == "nats://a:1,nats://b:2"
    assert env["JETLOOM_REPLICAS"] == "3"
    assert env["JETLOOM_NATS_TOKEN"] == "tok"
    assert "JETLOOM_NATS_USER" not in env  # unset fields stay unset
    # what a child's Typer options would read back (strings converted by field type)
    back = msgspec.convert(
        {field: env[var] for field, var in ENV.items() if var in env}, NatsSettings, strict=False
    )
    assert back == s


def test_a_commands_parameters_map_to_fields() -> None:
    params = {name: None for name in PARAMS} | {"nats_url": "nats://x:1", "replicas": 3, "other": 1}
    assert given(params) == {"url": "nats://x:1", "replicas": 3}
    assert from_params(NatsSettings(user="u"), params) == NatsSettings(
        url="nats://x:1", replicas=3, user="u"
    )


def test_the_deployment_files_nats_table_takes_every_setting() -> None:
    raw = tomllib.loads(
        """
        [nats]
        url = "nats://a:1,nats://b:2"
        replicas = 3
        creds_file = "/etc/jetloom/worker.creds"
        connect_attempts = 10
        """
    )
    spec = msgspec.convert(raw, Deployment).nats
    s = spec.settings()
    assert (s.servers, s.replicas, s.creds_file, s.connect_attempts) == (
        ["nats://a:1", "nats://b:2"],
        3,
        "/etc/jetloom/worker.creds",
        10,
    )
    # an embedded server's URL takes the file's place; the rest of the table stays
    assert spec.settings("nats://127.0.0.1:5000").url == "nats://127.0.0.1:5000"
    assert spec.settings("nats://127.0.0.1:5000").replicas == 3


def test_a_deployment_without_url_needs_an_embedded_server() -> None:
    spec = msgspec.convert({}, Deployment).nats
    with pytest.raises(ValueError, match="no url"):
        spec.settings()


def test_an_unknown_nats_key_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match="replica"):
        msgspec.convert({"nats": {"replica": 3}}, Deployment)
