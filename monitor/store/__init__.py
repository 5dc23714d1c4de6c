"""SQLite storage through sqlite-utils: schema migrations and every read/write the pipeline does.

This package is the only place that holds SQL. Captures and classifications are append-only: a
new capture or a new model version adds rows, never overwrites old ones. Callers use it as one
namespace (``from monitor import store; store.connect(...)``); the modules split it by concern:

- ``schema``: migrations and ``connect``
- ``runs``: configuration sync, runs, failures, feeds and entries
- ``captures``: captures, articles, custody, re-checks (edits and removals)
- ``classifications``: verdicts per article text and model version
- ``review``: accounts, reviews, the triage queue and analysts' counts
- ``evidence``: WARC locations, trusted timestamps, dossier selections
- ``campaigns``: campaigns, alerts and deliveries
- ``backups``: online copies for backups, restored WARC locations
- ``integrity``: the reads ``verify-store`` checks (captures, WARC locations, custody chain)
"""

from .schema import *  # noqa: F403
from .runs import *  # noqa: F403
from .captures import *  # noqa: F403
from .classifications import *  # noqa: F403
from .review import *  # noqa: F403
from .evidence import *  # noqa: F403
from .campaigns import *  # noqa: F403
from .backups import *  # noqa: F403
from .integrity import *  # noqa: F403
