"""``python -m cli``: the ``durable`` command without the installed script."""

from cli import main

main()
