"""Giving-day campaigns: sponsors\x27 matching pools, the group-commit engine, live pages."""
