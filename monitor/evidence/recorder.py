"""What a crawl or re-check run does for evidence besides the database: WARC copies, then timestamps."""

from __future__ import annotations

import logging

import sqlite_utils

from .. import store
from ..config import EvidenceSettings
from ..models import Fetched, WarcRef
from .timestamps import stamp_pending
from .warc import PreparedRecords, WarcStore, resolve_dir

LOGGER = logging.getLogger(__name__)


class Evidence:
    """Per-run evidence writer: ``write`` a capture's WARC records before storing it, ``stamp`` at the end."""

    def __init__(self, db: sqlite_utils.Database, settings: EvidenceSettings, run_id: int | None = None):
        self.db = db
        self.settings = settings
        self.run_id = run_id
        db_file = store.database_file(db)
        self.warc = (WarcStore(resolve_dir(settings.warc_dir, db_file), settings.warc_max_mb * 1_000_000, store.TOOL)
                     if settings.warc and db_file is not None else None)

    @property
    def software(self) -> str | None:
        """The tool name written into WARC records; None when WARC copies are off (nothing to prepare)."""
        return store.TOOL if self.warc is not None else None

    def write(self, fetched: Fetched, prepared: PreparedRecords | None = None) -> WarcRef | None:
        """Write the capture to the WARC files; None when WARC is off or the write failed (recorded).

        The database keeps the capture either way: it is the primary copy, the WARC a second one.
        """
        if self.warc is None:
            return None
        try:
            return self.warc.write(fetched, prepared)
        except OSError as e:
            LOGGER.error("WARC write failed for %s: %s", fetched.final_url, e)
            store.record_failure(self.db, self.run_id, "warc", "warc", f"{self.warc.folder}: {e}", url=fetched.url)
            return None

    def stamp(self) -> int:
        """Request RFC 3161 tokens for captures that have none (when a TSA is configured)."""
        return stamp_pending(self.db, self.settings, self.run_id)
