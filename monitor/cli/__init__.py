"""The ``monitor`` command line: one click group (``main``), thin subcommands in one module per concern.

Errors are turned into messages in ``main.MonitorGroup`` only. Importing this package registers
every subcommand on ``cli``.
"""

from . import backfill, backups, campaigns, classifier, configuration, crawling, evidence, serving  # noqa: F401  (register commands)
from .main import cli

__all__ = ["cli"]
