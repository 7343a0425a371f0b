"""``python -m durable_agents.cli``: the ``durable`` command without the installed script."""

from durable_agents.cli import main

main()
