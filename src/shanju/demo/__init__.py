"""Realistic, deterministic demo data for ``shanju demo`` (see :mod:`shanju.demo.seed`)."""
