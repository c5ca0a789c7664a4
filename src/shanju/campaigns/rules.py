"""Matching rules: the parameters of a pool's rule version, and (below) the decision.

A rule version is immutable: a change adds a version (``PoolRule``), and every gift stores the
version it was decided with. Parameters are validated here, once, when a version is created.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


class RatioOption(BaseModel):
    """One outcome of a random ratio: with relative ``weight``, match ``num/den`` of the gift."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: int = Field(ge=1, le=1_000_000)
    num: int = Field(ge=0, le=100)  # num == 0: this outcome is "not matched"
    den: int = Field(ge=1, le=100)


class Window(BaseModel):
    """A daily time window (China time), e.g. 10:00–12:00; ``end`` is exclusive."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str = Field(pattern=HHMM)
    end: str = Field(pattern=HHMM)

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end <= self.start:
            raise ValueError("a window must end after it starts")
        return self


class RuleParams(BaseModel):
    """A matching rule's parameters (all money in integer fen; ``None`` means no such cap).

    Fixed ratio: ``ratio_num/ratio_den`` of each qualifying gift (1/1 is 1:1, 1/2 is 1:0.5).
    Random ratio: when ``random`` is given, the ratio is drawn per gift from those weighted
    options (reproducibly, from ``seed`` and the order id); a drawn match smaller than
    ``floor_fen`` is raised to it (never above the gift, a cap or the pool).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ratio_num: int = Field(default=1, ge=0, le=100)
    ratio_den: int = Field(default=1, ge=1, le=100)
    random: tuple[RatioOption, ...] | None = None
    floor_fen: int = Field(default=0, ge=0)
    seed: int = Field(default=0, ge=0, le=2**62)
    min_gift_fen: int = Field(default=1, ge=1)
    max_match_per_gift_fen: int | None = Field(default=None, ge=1)
    per_donor_daily_cap_fen: int | None = Field(default=None, ge=1)
    per_project_daily_cap_fen: int | None = Field(default=None, ge=1)
    per_org_cap_fen: int | None = Field(default=None, ge=1)  # over the whole campaign
    daily_pot_fen: int | None = Field(default=None, ge=1)  # the pool may spend per day
    windows: tuple[Window, ...] = ()  # empty: the campaign's opening hours
    # The engagement hook: names of registered multipliers (see ``engagement``); none yet.
    multipliers: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _random_has_options(self) -> RuleParams:
        if self.random is not None and not self.random:
            raise ValueError("a random ratio needs at least one option")
        return self
