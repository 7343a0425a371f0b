"""Temporal workflow classes (thin, sandbox-safe, no I/O). Filled by the Temporal substrate."""
