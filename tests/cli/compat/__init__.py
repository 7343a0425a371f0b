"""One agent in three versions, one module each, as three deploys would install it.

A test starts runs with ``before`` in its own process, then runs ``durable
check-compat`` as a process with another version named in ``DURABLE_AGENT_MODULES``.
"""
