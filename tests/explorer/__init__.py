"""Tests of the deterministic schedule explorer (``threadlisten.testing``)."""
