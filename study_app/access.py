"""Secrets: hashed access codes, the admin gate, and resumable reader sessions.

Hashes are ``scrypt:N:r:p:SALT:HASH`` (hex), the standard library's memory-hard KDF, so a leaked study
file does not give away short codes; ``sha256:HEX`` is accepted for codes made with ``sha256sum``.
Sessions themselves are server-side (``study_app.web.sessions``); this module has only the pure parts:
the fingerprint a session keeps of its credential, and the back-off schedule for wrong codes.
"""

from __future__ import annotations

import hashlib
import hmac
import os

_SCRYPT = (2**14, 8, 1)


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    n, r, p = _SCRYPT
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt:{n}:{r}:{p}:{salt.hex()}:{digest.hex()}"


def is_hashed_secret(value: str) -> bool:
    parts = value.split(":")
    if parts[0] == "sha256":
        return len(parts) == 2 and len(parts[1]) == 64 and _is_hex(parts[1])
    return (parts[0] == "scrypt" and len(parts) == 6 and all(x.isdigit() for x in parts[1:4])
            and _is_hex(parts[4]) and _is_hex(parts[5]))


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
        return bool(text)
    except ValueError:
        return False


def verify_secret(given: str, expected: str) -> bool:
    """``expected`` is a hash from ``hash_secret``/sha256, or a plain code (reader codes only)."""
    if not given:
        return False
    if is_hashed_secret(expected):
        kind, *fields = expected.split(":")
        if kind == "sha256":
            return hmac.compare_digest(hashlib.sha256(given.encode()).hexdigest(), fields[0].lower())
        n, r, p, salt, digest = fields
        computed = hashlib.scrypt(given.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                                  dklen=len(digest) // 2)
        return hmac.compare_digest(computed.hex(), digest.lower())
    return hmac.compare_digest(given.encode(), expected.encode())


def admin_secret_ok(given: str, secret_env: str | None, secret_hash: str | None) -> bool:
    """The admin gate is closed (never open) when the environment variable it names is unset."""
    if secret_hash is not None:
        return verify_secret(given, secret_hash)
    expected = os.environ.get(secret_env or "", "")
    return bool(expected) and verify_secret(given, expected)


# Wrong codes for one reader id (or the organiser secret): a few are free (typos), then a wait that
# doubles with each further one, up to a quarter hour. From one client address, whatever the id, the
# bar is far higher: a hospital's readers share one address behind its proxy, and one person's typos
# must not hold the others back; only someone trying code after code for id after id reaches it.
FREE_TRIES = 5
ADDRESS_FREE_TRIES = 50
FIRST_WAIT_S = 15
MAX_WAIT_S = 15 * 60
FORGET_AFTER_S = 24 * 3600  # failures this long after the last one no longer count


def backoff_seconds(failures: int, free_tries: int = FREE_TRIES) -> float:
    return 0.0 if failures < free_tries else float(min(FIRST_WAIT_S * 2 ** (failures - free_tries), MAX_WAIT_S))


def credential_fingerprint(key: bytes, role: str, subject: str, credential: str) -> str:
    """What a session remembers of the credential it was opened with: changes when the code does,
    and reveals nothing of it without the study key."""
    return hmac.new(key, f"credential\0{role}\0{subject}\0{credential}".encode(), hashlib.sha256).hexdigest()


def opaque_id(key: bytes, *parts: object) -> str:
    """A stable id that reveals nothing without the study's key (case ids, image names)."""
    message = "\0".join(str(part) for part in parts).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:20]
