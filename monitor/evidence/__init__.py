"""Evidence that holds up: WARC copies of captures, trusted timestamps, dossiers and their verification.

See docs/evidence.md. Every SQL statement stays in the ``monitor/store`` package.
"""
