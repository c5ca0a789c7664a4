"""Gifts: one read model of a gift of either kind (the ``gifts`` view, ADR 0027)."""
