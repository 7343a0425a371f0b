"""Helpers the tests share: real servers the suite starts for itself."""
