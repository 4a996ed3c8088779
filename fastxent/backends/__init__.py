"""Backends: each computes the same losses (``docs/losses.md``), differing only in how it loops."""
