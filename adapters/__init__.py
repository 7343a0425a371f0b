"""Substrate adapters: the local durable runner and its stores (``adapters.local``)."""
