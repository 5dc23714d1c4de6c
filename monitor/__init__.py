"""Smear-campaign monitor: crawl news feeds, flag stigmatising language against defenders."""

__version__ = "0.1.0"
