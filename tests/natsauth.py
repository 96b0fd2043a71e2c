"""Test-time NATS credentials: NKeys, an operator → account → user JWT chain with its ``.creds``
file, and TLS certificates (a CA, a server certificate for 127.0.0.1, a client certificate).

Everything is generated per test (``nkeys`` for the keys and signatures, ``cryptography`` for
the certificates), so no secret is checked in.

JWTs follow the NATS format: a header ``{"typ": "JWT", "alg": "ed25519-nkey"}``, claims with
``jti`` (base32 of the SHA-256 of the claims without it), ``iat``, ``iss`` (the signer's public
key), ``sub`` and ``nats`` (the type and its limits), signed with the issuer's NKey; each part
base64url without padding.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys


@dataclass(frozen=True)
class NKey:
    """A generated NKey: ``seed`` (``S...``, secret) and ``public`` (``U...``, ``A...``, ``O...``)."""

    seed: bytes
    public: str

    @classmethod
    def new(cls, prefix: int) -> NKey:
        seed = nkeys.encode_seed(os.urandom(32), prefix)
        return cls(seed, nkeys.from_seed(bytearray(seed)).public_key.decode())

    def sign(self, data: bytes) -> bytes:
        return bytes(nkeys.from_seed(bytearray(self.seed)).sign(data))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_jwt(claims: dict[str, Any], issuer: NKey) -> str:
    """``claims`` (``sub``, ``name``, ``nats``) issued and signed by ``issuer``."""
    body = {"iat": int(time.time()), "iss": issuer.public, **claims}
    body["jti"] = base64.b32encode(hashlib.sha256(json.dumps(body).encode()).digest()).decode().rstrip("=")
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    payload = _b64(json.dumps(body).encode())
    signature = _b64(issuer.sign(f"{header}.{payload}".encode()))
    return f"{header}.{payload}.{signature}"


_UNLIMITED_ACCOUNT = {
    "subs": -1,
    "data": -1,
    "payload": -1,
    "imports": -1,
    "exports": -1,
    "wildcards": True,
    "conn": -1,
    "leaf": -1,
    "mem_storage": -1,
    "disk_storage": -1,
    "streams": -1,
    "consumer": -1,
}


@dataclass(frozen=True)
class JwtChain:
    """An operator, its system account, one account (JetStream enabled, no limits) and one user
    of it."""

    operator: NKey
    account: NKey
    user: NKey
    system: NKey
    operator_jwt: str
    account_jwt: str
    user_jwt: str
    system_jwt: str

    @classmethod
    def new(
        cls, user_permissions: dict[str, Any] | None = None, *, user_expires_at: int | None = None
    ) -> JwtChain:
        """A new chain; ``user_expires_at`` (Unix seconds) sets the user JWT's ``exp``."""
        op = NKey.new(nkeys.PREFIX_BYTE_OPERATOR)
        acct = NKey.new(nkeys.PREFIX_BYTE_ACCOUNT)
        user = NKey.new(nkeys.PREFIX_BYTE_USER)
        system = NKey.new(nkeys.PREFIX_BYTE_ACCOUNT)  # JetStream needs the server's own account
        op_jwt = encode_jwt(
            {
                "sub": op.public,
                "name": "test-operator",
                "nats": {"type": "operator", "version": 2, "system_account": system.public},
            },
            op,
        )
        sys_jwt = encode_jwt(
            {"sub": system.public, "name": "SYS", "nats": {"type": "account", "version": 2}}, op
        )
        acct_jwt = encode_jwt(
            {
                "sub": acct.public,
                "name": "jetloom",
                "nats": {"type": "account", "version": 2, "limits": _UNLIMITED_ACCOUNT},
            },
            op,
        )
        user_nats = {"type": "user", "version": 2, "subs": -1, "data": -1, "payload": -1}
        user_nats.update(user_permissions or {})
        user_claims: dict[str, Any] = {"sub": user.public, "name": "worker", "nats": user_nats}
        if user_expires_at is not None:
            user_claims["exp"] = user_expires_at
        user_jwt = encode_jwt(user_claims, acct)
        return cls(op, acct, user, system, op_jwt, acct_jwt, user_jwt, sys_jwt)

    def server_config(self) -> str:
        """nats-server settings trusting the operator, with the account preloaded."""
        return (
            f"operator: {self.operator_jwt}\n"
            f"system_account: {self.system.public}\n"
            "resolver: MEMORY\n"
            "resolver_preload: {\n"
            f"  {self.account.public}: {self.account_jwt}\n"
            f"  {self.system.public}: {self.system_jwt}\n"
            "}\n"
        )

    def creds(self) -> str:
        """The user's ``.creds`` file, as ``nsc`` writes it."""
        return (
            "-----BEGIN NATS USER JWT-----\n"
            f"{self.user_jwt}\n"
            "------END NATS USER JWT------\n\n"
            "-----BEGIN USER NKEY SEED-----\n"
            f"{self.user.seed.decode()}\n"
            "------END USER NKEY SEED------\n"
        )


@dataclass(frozen=True)
class Certificates:
    """PEM files in ``directory``: ``ca.pem``, ``server.pem``/``server-key.pem`` (for 127.0.0.1
    and localhost), ``client.pem``/``client-key.pem``, and ``other-ca.pem`` (a CA that signed
    nothing here)."""

    directory: Path

    @property
    def ca(self) -> str:
        return str(self.directory / "ca.pem")

    @property
    def other_ca(self) -> str:
        return str(self.directory / "other-ca.pem")

    @property
    def server(self) -> tuple[str, str]:
        return str(self.directory / "server.pem"), str(self.directory / "server-key.pem")

    @property
    def client(self) -> tuple[str, str]:
        return str(self.directory / "client.pem"), str(self.directory / "client-key.pem")

    @classmethod
    def new(cls, directory: Path) -> Certificates:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = datetime.datetime.now(datetime.UTC)

        def name(cn: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

        def write(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None) -> None:
            (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            if key is not None:
                (directory / f"{stem}-key.pem").write_bytes(
                    key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                )

        def ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
            key = ec.generate_private_key(ec.SECP256R1())
            cert = (
                x509.CertificateBuilder()
                .subject_name(name(cn))
                .issuer_name(name(cn))
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(
                    x509.KeyUsage(
                        digital_signature=True, key_cert_sign=True, crl_sign=True,
                        content_commitment=False, key_encipherment=False, data_encipherment=False,
                        key_agreement=False, encipher_only=False, decipher_only=False,
                    ),
                    critical=True,
                )
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256())
            )
            return cert, key

        def leaf(
            cn: str, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, *, server: bool
        ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
            key = ec.generate_private_key(ec.SECP256R1())
            builder = (
                x509.CertificateBuilder()
                .subject_name(name(cn))
                .issuer_name(ca_cert.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(
                    x509.ExtendedKeyUsage(
                        [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                    ),
                    critical=False,
                )
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                    critical=False,
                )
            )
            if server:
                builder = builder.add_extension(
                    x509.SubjectAlternativeName(
                        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                    ),
                    critical=False,
                )
            return builder.sign(ca_key, hashes.SHA256()), key

        directory.mkdir(parents=True, exist_ok=True)
        ca_cert, ca_key = ca("jetloom test CA")
        write("ca", ca_cert, None)
        write("server", *leaf("nats-server", ca_cert, ca_key, server=True))
        write("client", *leaf("jetloom-worker", ca_cert, ca_key, server=False))
        other, _ = ca("another CA")
        write("other-ca", other, None)
        return cls(directory)
