"""Untrusted video in: safe fetch, safe decode and the sandboxed worker processes that run them."""
