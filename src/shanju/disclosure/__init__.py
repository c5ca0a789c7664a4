"""Disclosure: per-project public ledgers, open-data exports, organizations' annual summaries."""
