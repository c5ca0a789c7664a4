"""The rate limiter: fixed windows on an injected clock, in memory and in Redis.

Redis (127.0.0.1:6379, or ``SHANJU_TEST_REDIS_URL``) is mandatory in CI, like the summit
broker's tests, and skipped with the reason outside it when unreachable. Each test uses its own
key namespace, so runs never see each other's counters.
"""

from __future__ import annotations

import os
import uuid

import pytest

from shanju.core.ratelimit import LIMITS, Limit, RateLimited, RateLimiter
from tests.conftest import IN_CI

REDIS_URL = os.environ.get("SHANJU_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
FIVE_A_MINUTE = Limit("test.five", 5, 60)


class Clock:
    """A clock the test moves by hand (seconds since the epoch)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _redis_problem() -> str | None:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: not reachable
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture
def redis_url() -> str:
    """Redis, in a namespace of this test's own (mandatory in CI)."""
    problem = _redis_problem()
    if problem:
        if IN_CI:
            pytest.fail(f"redis is mandatory in CI and unreachable: {problem}")
        pytest.skip(f"redis unreachable: {problem}")
    return f"{REDIS_URL}?namespace=test-{uuid.uuid4().hex}"


@pytest.fixture(params=["memory", "redis"])
def storage_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("redis_url")
    return url


def test_the_hit_over_the_limit_is_refused_until_the_window_ends(storage_url: str) -> None:
    clock = Clock(1_800_000_000.0)  # a window of 60 s starts here (1_800_000_000 = 60 × n)
    limiter = RateLimiter(storage_url, clock=clock)
    clock.now += 15
    for _ in range(5):
        assert limiter.hit(FIVE_A_MINUTE, "li.na@example.org") is not None
    with pytest.raises(RateLimited) as refused:
        limiter.hit(FIVE_A_MINUTE, "li.na@example.org")
    assert refused.value.retry_after == 45
    assert refused.value.headers == {"Retry-After": "45"}
    assert refused.value.status_code == 429 and refused.value.code == "rate_limited"
    # Another key has its own budget.
    assert limiter.hit(FIVE_A_MINUTE, "zhang.wei@example.org") is not None
    clock.now += 44
    with pytest.raises(RateLimited) as still:
        limiter.hit(FIVE_A_MINUTE, "li.na@example.org")
    assert still.value.retry_after == 1
    clock.now += 1  # the next window
    assert limiter.hit(FIVE_A_MINUTE, "li.na@example.org") is not None


def test_given_back_hits_do_not_count(storage_url: str) -> None:
    limiter = RateLimiter(storage_url, clock=Clock())
    for _ in range(20):
        limiter.give_back([limiter.hit(FIVE_A_MINUTE, "right password")])
    for _ in range(5):
        limiter.hit(FIVE_A_MINUTE, "right password")
    with pytest.raises(RateLimited):
        limiter.hit(FIVE_A_MINUTE, "right password")


def test_two_limiters_on_one_storage_share_the_counters(redis_url: str) -> None:
    """Two processes (two limiters) on one Redis count together; memory:// is one process's
    own, so only Redis is tried."""
    storage_url = redis_url
    clock = Clock()
    first, second = RateLimiter(storage_url, clock=clock), RateLimiter(storage_url, clock=clock)
    for limiter in (first, second, first, second, first):
        limiter.hit(FIVE_A_MINUTE, "shared")
    with pytest.raises(RateLimited):
        second.hit(FIVE_A_MINUTE, "shared")
    # Another namespace (another deployment on the same Redis) does not see them.
    other = RateLimiter(storage_url.split("?")[0] + f"?namespace=other-{uuid.uuid4().hex}",
                        clock=clock)
    assert other.hit(FIVE_A_MINUTE, "shared") is not None


def test_every_limit_is_counted_even_when_one_refuses(storage_url: str) -> None:
    limiter = RateLimiter(storage_url, clock=Clock())
    account, ip = LIMITS["password.account"], LIMITS["password.ip"]
    for _ in range(account.amount):
        limiter.hit_all([("password.account", "a@example.org"), ("password.ip", "203.0.113.9")])
    with pytest.raises(RateLimited):
        limiter.hit_all([("password.account", "a@example.org"), ("password.ip", "203.0.113.9")])
    # The refused attempt still used the address's budget: 11 of 30 spent.
    for n in range(ip.amount - account.amount - 1):
        limiter.hit_all([("password.account", f"{n}@example.org"),
                         ("password.ip", "203.0.113.9")])
    with pytest.raises(RateLimited):
        limiter.hit_all([("password.account", "new@example.org"), ("password.ip", "203.0.113.9")])


def test_an_unreachable_storage_lets_requests_through() -> None:
    # Nothing listens on port 1: a broken Redis must not stop sign-in or giving.
    limiter = RateLimiter("redis://127.0.0.1:1/0", clock=Clock())
    for _ in range(FIVE_A_MINUTE.amount + 3):
        assert limiter.hit(FIVE_A_MINUTE, "anyone") is None
    limiter.give_back([None])


def test_long_waits_are_said_in_minutes() -> None:
    assert RateLimited(59).params == {"seconds": 59}
    assert RateLimited(3599).params == {"minutes": 60}
    assert RateLimited(0).retry_after == 1


def test_limits_are_generous_for_donors_and_strict_for_passwords() -> None:
    assert LIMITS["password.account"] == Limit("password.account", 10, 60)
    assert LIMITS["password.ip"].amount > LIMITS["password.account"].amount
    assert LIMITS["checkout.donor"].amount >= 60 and LIMITS["checkout.donor"].seconds == 60
    assert LIMITS["checkout.ip"].amount >= 10 * LIMITS["checkout.donor"].amount
