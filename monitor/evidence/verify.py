"""Check a dossier (zip or unpacked folder): every hash in MANIFEST.sha256, capture hashes, WARC digests, timestamps.

Checks, each naming the file that fails:
1. every file listed in ``MANIFEST.sha256`` exists and has that SHA-256; no file is unlisted;
2. every capture file has the SHA-256 recorded when it was captured (``items.json``), so a
   file changed together with the manifest is still caught;
3. every WARC record file holds a response whose payload is that capture (its bytes, and its digest
   header: SHA-256, or SHA-1 for captures backfilled from other tools' archives);
4. every RFC 3161 token stamps that capture's SHA-256 and verifies (``openssl ts -verify``)
   against ``--tsa-ca`` or the CA bundled as ``timestamps/tsa-ca.pem``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import timestamps
from .warc import digest_matches, response_payloads

MANIFEST = "MANIFEST.sha256"


@dataclass
class Report:
    """What a verification found."""

    files: int = 0
    captures: int = 0
    warc_records: int = 0
    tokens: int = 0
    problems: list[str] = field(default_factory=list)   # "FILE: reason"
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.problems


def _read_members(path: Path, report: Report) -> dict[str, bytes]:
    if path.is_dir():
        return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    members: dict[str, bytes] = {}
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        report.problems.append(f"{path.name}: not a readable zip ({e})")
        return members
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            try:
                members[info.filename] = archive.read(info)
            except (zipfile.BadZipFile, OSError, EOFError) as e:   # a flipped byte fails the zip's CRC-32
                report.problems.append(f"{info.filename}: damaged in the zip ({e})")
    return members


def verify_dossier(path: str | Path, tsa_ca: str | Path | None = None) -> Report:
    """Verify a dossier zip (or its unpacked folder); see the module docstring."""
    path = Path(path)
    report = Report()
    files = _read_members(path, report)
    if MANIFEST not in files:
        report.problems.append(f"{MANIFEST}: missing")
        return report
    listed: dict[str, str] = {}
    for n, line in enumerate(files[MANIFEST].decode("utf-8", "replace").splitlines(), 1):
        m = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](.+)", line)
        if not m:
            report.problems.append(f"{MANIFEST}: line {n} is not '<sha256>  <file>'")
            continue
        listed[m.group(2)] = m.group(1).lower()
    for name, expected in sorted(listed.items()):
        if name not in files:
            if not any(p.startswith(f"{name}:") for p in report.problems):
                report.problems.append(f"{name}: listed in {MANIFEST} but missing")
            continue
        actual = hashlib.sha256(files[name]).hexdigest()
        report.files += 1
        if actual != expected:
            report.problems.append(f"{name}: SHA-256 mismatch ({MANIFEST} says {expected}, file is {actual})")
    for name in sorted(set(files) - set(listed) - {MANIFEST}):
        report.problems.append(f"{name}: not listed in {MANIFEST}")
    if "items.json" in files:
        try:
            items = json.loads(files["items.json"])["items"]
        except (ValueError, KeyError, TypeError) as e:
            report.problems.append(f"items.json: unreadable ({e})")
            items = []
        ca = Path(tsa_ca) if tsa_ca else None
        bundled = files.get("timestamps/tsa-ca.pem")
        for item in items:
            for capture in item.get("captures", []):
                _check_capture(capture, files, report, ca, bundled)
    return report


def _check_capture(capture: dict[str, Any], files: dict[str, bytes], report: Report, ca: Path | None,
                   bundled: bytes | None) -> None:
    sha = capture["sha256"]
    body_file = capture["body_file"]
    report.captures += 1
    if body_file in files and hashlib.sha256(files[body_file]).hexdigest() != sha:
        report.problems.append(f"{body_file}: not the bytes captured (SHA-256 recorded at capture time: {sha})")
    warc = capture.get("warc")
    if warc and warc["file"] in files:
        report.warc_records += 1
        try:
            found = list(response_payloads(io.BytesIO(files[warc["file"]])))
        except Exception as e:  # warcio raises several kinds on damaged input
            found = []
            report.problems.append(f"{warc['file']}: unreadable WARC ({type(e).__name__}: {e})")
        # the payload is the capture, and the record's own digest (SHA-256, or SHA-1 in archives made by
        # other tools and backfilled: docs/scale.md) matches it
        if found and not all(hashlib.sha256(payload).hexdigest() == sha and digest_matches(digest, payload)
                             for _, digest, payload in found):
            report.problems.append(f"{warc['file']}: WARC response payload or its digest does not match {sha}")
        elif not found and not any(p.startswith(warc["file"]) for p in report.problems):
            report.problems.append(f"{warc['file']}: no WARC response record")
    for stamp in capture.get("timestamps", []):
        if stamp["file"] not in files:
            continue
        report.tokens += 1
        if ca is None and bundled is None:
            info = timestamps.reply_info(files[stamp["file"]])
            if info["imprint"] != sha:
                report.problems.append(f"{stamp['file']}: timestamp is for another hash ({info['imprint']})")
            else:
                report.notes.append(f"{stamp['file']}: stamps the capture's hash; signature not checked (no CA; use --tsa-ca)")
            continue
        reason = timestamps.verify(files[stamp["file"]], sha, ca_file=ca,
                                   ca_pem=bundled.decode("ascii", "replace") if bundled else None)
        if reason:
            report.problems.append(f"{stamp['file']}: timestamp does not verify ({reason})")

