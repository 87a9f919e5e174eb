"""The dashboard's session: the API key a user signed in with, in an encrypted cookie.

The cookie holds the key itself (encrypted and authenticated with Fernet), so
every page is authorised exactly as an API call with that key would be: a key
revoked in the `api-keys` secret stops working in the dashboard too. A CSRF
token is drawn per session and travels in the same cookie; every form carries
it in a hidden field and every POST must match it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken

COOKIE_NAME = "cm_session"
# A session ends after this long whatever happens; signing in again is cheap.
MAX_AGE_SECONDS = 12 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    key: str
    csrf: str


class SessionCodec:
    """Seals sessions into cookie values and opens them again (None: not a session of ours)."""

    def __init__(self, secret: str | None) -> None:
        # Without a configured secret, sessions last as long as this process
        # (several gateways behind one address need the same secret).
        raw = secret.encode() if secret else secrets.token_bytes(32)
        derived = hashlib.sha256(b"coremachine-ui-session\0" + raw).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def new(self, key: str) -> Session:
        return Session(key=key, csrf=secrets.token_urlsafe(32))

    def seal(self, session: Session) -> str:
        payload = json.dumps({"k": session.key, "c": session.csrf}).encode()
        return self._fernet.encrypt(payload).decode()

    def open(self, value: str | None) -> Session | None:
        if not value or len(value) > 4096:
            return None
        try:
            payload = json.loads(self._fernet.decrypt(value.encode(), ttl=MAX_AGE_SECONDS))
            return Session(key=str(payload["k"]), csrf=str(payload["c"]))
        except (InvalidToken, ValueError, KeyError, TypeError):
            return None


def csrf_matches(session: Session, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(session.csrf.encode(), (token or "").encode())
