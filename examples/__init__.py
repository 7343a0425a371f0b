"""Runnable example agents used by the README and the demo."""
