"""The project's exception hierarchy.

    MonitorError            base: every error the CLI turns into a clear message
    ├── ConfigError         feeds.yaml / classifier.yaml / schedules invalid (lists every problem)
    ├── FetchError          HTTP failure, timeout, refused connection, body too large
    ├── FeedError           a document that is not a usable feed
    ├── ExtractError        no article text could be extracted from a page
    ├── ModelError          model weights missing, unreadable or inconsistent
    ├── DataError           a training / scoring input file is malformed
    └── DatabaseError       the database was made by another version of the monitor
"""

from __future__ import annotations


class MonitorError(Exception):
    """Base class of every error the monitor reports to its user."""


class ConfigError(MonitorError):
    """A configuration file is invalid; ``problems`` lists every problem found."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"{source}: {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in {source}:\n{lines}")


class FetchError(MonitorError):
    """Fetching a URL failed. ``kind`` is a short machine-readable reason."""

    def __init__(self, url: str, kind: str, message: str, status: int | None = None):
        self.url = url
        self.kind = kind
        self.status = status
        super().__init__(f"{url}: {message}")


class FeedError(MonitorError):
    """A fetched document is not a feed the monitor can read."""


class ExtractError(MonitorError):
    """Article text could not be extracted; the message gives the reason."""


class ModelError(MonitorError):
    """A classifier's weights could not be resolved or loaded."""


class DataError(MonitorError):
    """A labelled-data or scoring input file is malformed."""


class DatabaseError(MonitorError):
    """The database's schema does not match this version of the monitor."""
