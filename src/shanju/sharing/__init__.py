"""Sharing: the share poster, share metadata for WeChat and other apps, inviting friends."""
