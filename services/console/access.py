"""Who may act through the console: the operator token and the browser sessions that presented it.

* The **operator token** is 32 random bytes (URL-safe base64) in ``console.token_file`` (default
  ``<nats.auth.dir>/console-operator.token``), created mode 0600 in a 0700 directory like the nkey seeds beside it.
  Whoever can read that file may act; nobody else can. It is not a NATS credential: the console holds the
  ``operator`` seed itself and never hands it to a browser. ``ordermesh console --rotate-token`` replaces it, and
  every session that logged in with the old one is refused from its next action on.
* A browser **logs in** by presenting the token once (the page's field, or ``/#token=...`` which the page posts and
  then removes from the address bar). It gets a session cookie (random, HttpOnly, SameSite=Strict; only a digest of
  it is kept) and a CSRF token that every action must carry in the ``X-CSRF-Token`` header.
* A browser without such a session is an **observer**: it sees everything, and each action it attempts is refused
  with 403 and the reason.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ordermesh.platform.auth import write_private
from ordermesh.platform.config import OrderMeshConfig

TOKEN_FILE = "console-operator.token"
COOKIE = "om_console_session"
CSRF_HEADER = "X-CSRF-Token"
MIN_TOKEN_CHARS = 20


class TokenError(Exception):
    """The token file cannot be used; the message is one line."""


def token_path(config: OrderMeshConfig) -> Path:
    configured = config.console.token_file
    return Path(configured) if configured else Path(config.nats.auth.dir) / TOKEN_FILE


def ensure_token(path: Path, *, rotate: bool = False) -> tuple[str, bool]:
    """The operator token in ``path`` and whether it was written now (missing, or ``rotate``)."""
    if path.exists() and not rotate:
        return read_token(path), False
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    write_private(path, (token + "\n").encode())
    return token, True


def read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise TokenError(f"cannot read the console's operator token {path}: {exc.strerror or exc}") from None
    if len(token) < MIN_TOKEN_CHARS:
        raise TokenError(f"{path}: the operator token is shorter than {MIN_TOKEN_CHARS} characters")
    return token


def loose_permissions(path: Path) -> bool:
    """True when others than the owner may read ``path``."""
    try:
        return bool(os.stat(path).st_mode & 0o077)
    except OSError:
        return False


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


@dataclass
class Session:
    label: str  # how the logs and the page name it ("operator#3"); never the cookie
    csrf: str
    token_digest: bytes  # of the token it logged in with: a rotated token ends it
    expires: float


class Access:
    """The token (read again when its file changes) and the operator sessions, in memory (a restart logs out)."""

    def __init__(
        self,
        path: Path,
        *,
        ttl_s: float = 12 * 3600,
        max_sessions: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._sessions: dict[bytes, Session] = {}  # digest of the cookie -> session
        self._cached: tuple[tuple[int, int], bytes] | None = None
        self._logins = 0

    def token_digest(self) -> bytes | None:
        """The current token's digest (None: the file is gone or unusable: nobody may act)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        if self._cached is None or self._cached[0] != stamp:
            try:
                self._cached = (stamp, _digest(read_token(self.path)))
            except TokenError:
                return None
        return self._cached[1]

    def login(self, presented: str) -> tuple[str, Session] | None:
        """A new session (its cookie value and itself) when ``presented`` is the token, else None."""
        current = self.token_digest()
        if current is None or not hmac.compare_digest(_digest(presented.strip()), current):
            return None
        self._expire()
        while len(self._sessions) >= self.max_sessions:  # the oldest goes
            self._sessions.pop(next(iter(self._sessions)))
        self._logins += 1
        cookie = secrets.token_urlsafe(32)
        session = Session(
            label=f"operator#{self._logins}",
            csrf=secrets.token_urlsafe(24),
            token_digest=current,
            expires=self._clock() + self.ttl_s,
        )
        self._sessions[_digest(cookie)] = session
        return cookie, session

    def session(self, cookie: str | None) -> Session | None:
        """The operator session of this cookie, if it is one, has not expired and its token is still current."""
        if not cookie:
            return None
        key = _digest(cookie)
        session = self._sessions.get(key)
        if session is None:
            return None
        current = self.token_digest()
        if (
            self._clock() >= session.expires
            or current is None
            or not hmac.compare_digest(session.token_digest, current)
        ):
            del self._sessions[key]
            return None
        return session

    def logout(self, cookie: str | None) -> None:
        if cookie:
            self._sessions.pop(_digest(cookie), None)

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, s in self._sessions.items() if now >= s.expires]:
            del self._sessions[key]
