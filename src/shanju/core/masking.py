"""Privacy by default: donor names are shown masked in public (张* style)."""

from __future__ import annotations


def mask_name(name: str | None, *, anonymous: bool = False) -> str:
    """Mask a display name for public lists: ``张三丰`` → ``张**``, ``alice`` → ``a****``."""
    if anonymous or not name or not name.strip():
        return "爱心人士"
    name = name.strip()
    if len(name) == 1:
        return name + "*"
    return name[0] + "*" * min(len(name) - 1, 4)
