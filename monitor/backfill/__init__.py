"""Backfill: classify web archives (WARC files, text-only JSON lines) with the crawl's own stages.

- ``sources``: SOURCE arguments to shards, shards to records (bad records counted, never raised);
- ``stages``: one record through the crawl's pure stages (extract, dedup keys, classify) to a row;
- ``shards``: the Parquet shard format (one output per input shard, replaced atomically);
- ``engines``: the local process pool and Ray Data, both running ``stages``;
- ``merge``: Parquet shards into the SQLite store, with each record's archive provenance.

docs/scale.md has the whole story.
"""
