"""Rate limits: how often one account or one address may sign in, sign up, report or give.

Every figure is in :data:`LIMITS` below (one place; docs/security.md and docs/architecture.md
describe them). The counters live in a storage of the maintained ``limits`` library, chosen by
``SHANJU_RATE_LIMIT_URL``: ``memory://`` (the default: one process) or ``redis://host:6379/0``
(shared by every server process; add ``?namespace=NAME`` when several deployments share one
Redis). See ADR 0017.

The windows are fixed windows counted on the limiter's own clock (``clock=``, seconds since the
epoch): the window a hit falls in is ``floor(now / seconds)`` and is part of the counter's key,
so a test moves the clock instead of sleeping, on either storage. The storage's own expiry
only throws old counters away. ``limits``' strategies read ``time.time()`` inside the storage
and cannot be given a clock, which is why only its storages are used (ADR 0017).

When the storage cannot be reached (Redis down) the limiter lets requests through and logs
``ratelimit.storage_unavailable``: a broken Redis must not stop giving on a giving day.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog
from fastapi import Request
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string

from shanju.core.errors import DomainError
from shanju.core.i18n import N_

log = structlog.get_logger(__name__)


class Limit(NamedTuple):
    """At most ``amount`` hits per ``seconds`` for one key (an account, an address, ...)."""

    name: str
    amount: int
    seconds: int


MINUTE = 60
HOUR = 3600

# Every rate limit of the platform. "failures" limits count only failed attempts (a hit that
# succeeds is given back); the others count every attempt. Per-address figures are larger than
# per-account ones: many people share one address behind a carrier's or an office's NAT.
LIMITS: dict[str, Limit] = {
    # Password checks (sign-in page, POST /api/v1/auth/tokens): failures per account (the
    # normalized email, known or not) and per client address. Each costs ~0.18 s of argon2,
    # so an attempt over the limit is refused before the hash is computed.
    "password.account": Limit("password.account", 10, MINUTE),
    "password.ip": Limit("password.ip", 30, MINUTE),
    # New API tokens (account page and API), per account and per address.
    "api_token.account": Limit("api_token.account", 20, HOUR),
    "api_token.ip": Limit("api_token.ip", 60, HOUR),
    # Sign-ups (page and API), per address: each sends an email (a campus or an event signs
    # up many people from one address).
    "signup.ip": Limit("signup.ip", 60, HOUR),
    # Password reset emails (page and API): per address asked for, and per client address.
    # Each sends an email, to an address the asker need not own.
    "reset.account": Limit("reset.account", 5, HOUR),
    "reset.ip": Limit("reset.ip", 30, HOUR),
    # SMS codes (sign-in, adding a phone, confirming a deletion): per number as Alibaba Cloud
    # limits code messages by default (one a minute, five an hour), and per client address.
    # Each costs money and reaches someone's phone.
    "sms.phone_minute": Limit("sms.phone_minute", 1, MINUTE),
    "sms.phone": Limit("sms.phone", 5, HOUR),
    "sms.ip": Limit("sms.ip", 20, HOUR),
    # Wrong SMS codes, per client address (each code also dies after 5 wrong tries).
    "code.ip": Limit("code.ip", 30, HOUR),
    # Changes of email address (each sends two emails), per account.
    "email_change.account": Limit("email_change.account", 5, HOUR),
    "email_change.ip": Limit("email_change.ip", 30, HOUR),
    # Reports (举报), per signed-in user and per address.
    "complaint.user": Limit("complaint.user", 10, HOUR),
    "complaint.ip": Limit("complaint.ip", 30, HOUR),
    # Starting a gift: a donation's checkout or a giving-day order (pages and API), per donor
    # and per address. Generous on purpose: on 99 Giving Day a donor gives to many projects in
    # a few minutes, and a carrier's NAT (CGNAT) puts thousands of phones behind one address
    # at the opening minute: the per-donor figure does the work.
    "checkout.donor": Limit("checkout.donor", 60, MINUTE),
    "checkout.ip": Limit("checkout.ip", 6000, MINUTE),
}


class RateLimited(DomainError):
    """Too many attempts: try again after ``retry_after`` seconds (429 with ``Retry-After``)."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        self.retry_after = max(1, int(retry_after))
        if self.retry_after < 2 * MINUTE:
            super().__init__(
                N_("Too many attempts. Please wait %(seconds)s seconds and try again."),
                params={"seconds": self.retry_after})
        else:
            super().__init__(
                N_("Too many attempts. Please wait %(minutes)s minutes and try again."),
                params={"minutes": math.ceil(self.retry_after / MINUTE)})
        self.details = {"retry_after": self.retry_after}

    @property
    def headers(self) -> dict[str, str]:
        """The ``Retry-After`` header (RFC 9110: delay in seconds)."""
        return {"Retry-After": str(self.retry_after)}


@dataclass(frozen=True)
class Hit:
    """One counted hit: which counter, so that :meth:`RateLimiter.give_back` can undo it."""

    storage_key: str
    seconds: int


def _storage_url(url: str) -> tuple[str, str]:
    """Split ``?namespace=NAME`` off a storage URL; return (url for ``limits``, namespace)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    namespace = next((v for k, v in query if k == "namespace"), "")
    rest = urlencode([(k, v) for k, v in query if k != "namespace"])
    return urlunsplit(parts._replace(query=rest)), namespace


class RateLimiter:
    """Counts hits per (limit, key) in fixed windows of the limiter's clock."""

    def __init__(self, url: str = "memory://", *, clock: Callable[[], float] = time.time,
                 namespace: str = "") -> None:
        storage_url, url_namespace = _storage_url(url)
        options: dict[str, float | str | bool] = {"wrap_exceptions": True}
        if storage_url.startswith(("redis", "rediss", "valkey")):
            # Fail fast (and open) rather than hold a request while Redis is unreachable.
            options.update(socket_connect_timeout=1.0, socket_timeout=1.0)
        storage = storage_from_string(storage_url, **options)
        if not isinstance(storage, Storage):  # an async+… URL
            raise ValueError(f"SHANJU_RATE_LIMIT_URL: not a synchronous storage: {url}")
        self.storage = storage
        self.clock = clock
        self.prefix = "shanju:" + (namespace or url_namespace or "default")

    def _key(self, limit: Limit, key: str, window: int) -> str:
        # Keys are hashed: emails and addresses are not written into Redis in clear.
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return f"{self.prefix}:{limit.name}:{digest}:{window}"

    def hit(self, limit: Limit, key: str) -> Hit | None:
        """Count one hit; raise :class:`RateLimited` if it is over the limit.

        Returns the hit (to give back if the attempt succeeded), or None when the storage is
        unavailable (the request is let through).
        """
        now = self.clock()
        window = math.floor(now / limit.seconds)
        storage_key = self._key(limit, key, window)
        try:
            count = self.storage.incr(storage_key, limit.seconds * 2)
        except StorageError as exc:
            log.warning("ratelimit.storage_unavailable", limit=limit.name, error=str(exc))
            return None
        if count > limit.amount:
            raise RateLimited(math.ceil((window + 1) * limit.seconds - now))
        return Hit(storage_key, limit.seconds)

    def give_back(self, hits: Iterable[Hit | None]) -> None:
        """Undo hits that turned out not to count (a password that was right)."""
        for hit in hits:
            if hit is None:
                continue
            try:
                self.storage.incr(hit.storage_key, hit.seconds * 2, amount=-1)
            except StorageError as exc:
                log.warning("ratelimit.storage_unavailable", error=str(exc))

    def hit_all(self, pairs: Iterable[tuple[str, str]]) -> list[Hit | None]:
        """Count one hit on each ``(limit name, key)``; raise if any is over its limit.

        Every limit is counted even when an earlier one refuses, so that an attacker spread
        over many accounts still uses up the address's budget.
        """
        hits: list[Hit | None] = []
        refused: list[RateLimited] = []
        for name, key in pairs:
            try:
                hits.append(self.hit(LIMITS[name], key))
            except RateLimited as exc:
                refused.append(exc)
        if refused:
            raise max(refused, key=lambda e: e.retry_after)
        return hits


def client_address(request: Request) -> str:
    """The client's address as uvicorn gives it (proxy headers only from trusted proxies:
    ``shanju serve --forwarded-allow-ips``)."""
    return request.client.host if request.client else "unknown"


def limiter(request: Request) -> RateLimiter:
    """Return the application's rate limiter."""
    found: RateLimiter = request.app.state.ratelimiter
    return found


def enforce(request: Request, action: str, *, account: str | int | None = None
            ) -> list[Hit | None]:
    """Count one ``action`` for the client's address and, if given, the account.

    ``action`` is the prefix of two entries of :data:`LIMITS`: ``<action>.ip`` and, with an
    account, the other ``<action>.*`` one (``password.account``, ``checkout.donor``, ...).
    Raises :class:`RateLimited` (429) when either is over its limit.
    """
    pairs = [(f"{action}.ip", client_address(request))]
    if account is not None:
        name = next(n for n in LIMITS if n.startswith(f"{action}.") and not n.endswith(".ip"))
        pairs.insert(0, (name, str(account)))
    return limiter(request).hit_all(pairs)
