"""``python -m monitor.cli``: the same as the ``monitor`` console script."""

from . import cli

cli()
