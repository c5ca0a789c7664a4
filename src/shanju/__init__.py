"""Shanju (善举): an open-source internet charity platform."""

__version__ = "0.1.0"
