"""A dossier for UN Special Procedures and IACHR communications: one target, a period, every item with its evidence.

``build_dossier`` writes one zip: ``dossier.html`` (print-ready, inline SVG timeline, no
JavaScript), ``summary-es.txt`` / ``summary-en.txt`` (laid out like an allegation letter),
``items.csv`` / ``items.json``, ``captures/`` (the exact bytes served, their HTTP metadata, the
WARC records and any RFC 3161 tokens, for EVERY capture of every item), ``custody.csv``,
``README.txt`` and ``MANIFEST.sha256`` (``sha256sum -c`` format); with ``pdf``, ``dossier.pdf``
(the same data laid out for filing, rendered by ``pdf.py``).

The zip is deterministic: same database and arguments give the same bytes. Nothing in it says
"now": its date is ``--as-of`` or the latest time among the selected evidence, the export's own
custody row is not part of any selection, and entries are sorted with fixed timestamps. The
PDF's dates and ``/ID`` come from the as-of time and ``items.json`` (see ``pdf.py``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import zipfile
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from .. import store
from ..classifier.registry import CATEGORIES
from ..classifier.targets import Target, Watchlist, fold
from ..errors import MonitorError
from ..highlight import highlight_segments
from .warc import locate, read_span

LANGS = ("es", "en")
CATEGORY_THRESHOLD = 0.4   # a category counts for an item at this score (as in classifier/reviews.py)
ACTIVE_DECISIONS = ("confirm", "relabel")
CATEGORY_LABELS = {
    "criminalisation": ("criminalización", "criminalisation"),
    "corruption_profiteering": ("corrupción y lucro", "corruption and profiteering"),
    "false_claims": ("denuncias falsas", "false claims"),
    "anti_development": ("enemigos del desarrollo", "anti-development"),
    "disloyalty_foreign": ("deslealtad, agentes extranjeros", "disloyalty, foreign agents"),
    "gendered": ("ataques de género", "gendered attacks"),
    "discrediting_oversight": ("descrédito de órganos de supervisión", "discrediting oversight bodies"),
    "threat_incitement": ("amenazas e incitación", "threats and incitement"),
}
SPEAKER_TYPES = {"official": ("funcionario público (Estado)", "public official (State)"),
                 "media": ("medio o columnista", "media outlet or columnist"),
                 "other": ("otro actor no estatal", "other non-State actor")}
T = {
    "title": ("Expediente de estigmatización", "Stigmatisation dossier"),
    "target": ("Persona u organización afectada", "Targeted person or organisation"),
    "aliases": ("También nombrada como", "Also named as"),
    "period": ("Periodo", "Period"),
    "as_of": ("Evidencia al", "Evidence as of"),
    "selection": ("Selección", "Selection"),
    "confirmed_only": ("solo elementos confirmados por una persona revisora",
                       "only items confirmed by a human reviewer"),
    "flagged_not_rejected": ("elementos señalados por el clasificador o confirmados, sin los rechazados en revisión",
                             "items flagged by the classifier or confirmed, excluding those rejected on review"),
    "items": ("Elementos", "Items"), "outlets": ("Medios", "Outlets"),
    "by_category": ("Por categoría", "By category"), "by_outlet": ("Por medio", "By outlet"),
    "by_speaker": ("Por tipo de emisor", "By speaker type"), "timeline": ("Cronología", "Timeline"),
    "summary": ("Resumen para una comunicación", "Summary for a communication"),
    "entries": ("Elementos, uno por uno", "Items, one by one"),
    "date": ("Fecha", "Date"), "outlet": ("Medio", "Outlet"), "section": ("Sección", "Section"),
    "columnist": ("Columnista", "Columnist"), "author": ("Autor(a)", "Author"), "url": ("URL", "URL"),
    "captures": ("Capturas", "Captures"), "captured_at": ("Capturada (UTC)", "Captured (UTC)"),
    "sha256": ("SHA-256 de los bytes servidos", "SHA-256 of the bytes served"), "file": ("Archivo", "File"),
    "warc": ("Registro WARC", "WARC record"), "tsa": ("Sello de tiempo RFC 3161", "RFC 3161 timestamp"),
    "passages": ("Pasajes citados", "Quoted passages"), "categories": ("Categorías", "Categories"),
    "voice": ("Voz", "Voice"), "speaker": ("Emisor", "Speaker"), "review": ("Revisión", "Review"),
    "not_reviewed": ("sin revisar", "not reviewed"), "history": ("Después de la captura", "After capture"),
    "event.edited": ("editado el", "edited on"), "event.removed": ("retirado (404/410) el", "removed (404/410) on"),
    "event.restored": ("de nuevo en línea el", "back online on"), "removed": ("Retirado de la web el", "Removed from the web on"),
    "unchanged": ("sin cambios detectados", "no change detected"), "model": ("Modelo", "Model"),
    "none": ("ninguno", "none"), "verify": ("Verificación", "Verification"),
    "versions": ("Versiones del texto", "Versions of the text"), "version": ("Versión", "Version"),
    "version_first": ("primera captura", "first capture"), "capture": ("captura", "capture"),
    "verdict.flagged": ("señalada", "flagged"), "verdict.clean": ("sin señalar", "not flagged"),
    "verdict.none": ("sin clasificar", "not classified"),
    "diff": ("Cambios respecto a la versión anterior", "Changes from the version before"),
    "passage_in": ("en la versión", "in version"),
    "smear_removed": ("Estigmatización retirada en una edición posterior",
                      "Smear removed by a later edit"),
    "smear_added": ("Estigmatización añadida en una edición", "Smear added by an edit"),
    "voice.authorial": ("autoral (el medio o columnista)", "authorial (the outlet or columnist)"),
    "voice.attributed": ("atribuida (cita a un emisor)", "attributed (quotes a speaker)"),
    "decision.confirm": ("confirmado", "confirmed"), "decision.relabel": ("confirmado con cambios", "confirmed with changes"),
    "by": ("por", "by"), "on": ("el", "on"), "no_warc": ("sin registro WARC", "no WARC record"),
    "verify_text": ("Cada archivo figura con su SHA-256 en MANIFEST.sha256. Para comprobarlo: "
                    "sha256sum -c MANIFEST.sha256 (o monitor verify sobre el zip). Véase README.txt.",
                    "Every file is listed with its SHA-256 in MANIFEST.sha256. To check: "
                    "sha256sum -c MANIFEST.sha256 (or monitor verify on the zip). See README.txt."),
}

PDF_T = {   # dossier-pdf.html only
    "pdf.table": ("Tabla de elementos", "Table of items"),
    "pdf.official": ("¿Funcionario público?", "Public official?"),
    "pdf.yes": ("sí", "yes"), "pdf.no": ("no", "no"),
    "pdf.headline": ("Titular", "Headline"),
    "pdf.no_passage": ("sin pasaje señalado (elemento confirmado en revisión)",
                       "no passage marked (item confirmed on review)"),
    "pdf.page": ("Página", "Page"), "pdf.of": ("de", "of"),
    "pdf.copy": ("Este PDF es una copia para presentar; la evidencia son las capturas del zip, con sus hashes.",
                 "This PDF is a copy to file; the evidence is the captures in the zip, with their hashes."),
    "pdf.subject": ("Resumen para una comunicación: {n} elemento(s) que nombran a {target}, {start} — {end}",
                    "Summary for a communication: {n} item(s) naming {target}, {start} — {end}"),
}

def label(key: str, lang: str) -> str:
    """The text of ``key`` in ``lang`` ("es" or "en")."""
    pair = T.get(key) or PDF_T.get(key) or CATEGORY_LABELS.get(key) or SPEAKER_TYPES.get(key)
    return pair[LANGS.index(lang)] if pair else key


@dataclass(frozen=True, slots=True)
class DossierResult:
    """What an export wrote."""

    path: Path
    sha256: str
    items: int
    captures: int
    files: int
    size: int
    as_of: str


def resolve_target(name: str, watchlist: Watchlist | None) -> Target:
    """The watchlist entry whose name or an alias is ``name`` (case and accents ignored).

    Raises:
        MonitorError: no watchlist entry has that name or alias.
    """
    wanted = fold(name.strip())
    for target in (watchlist.targets if watchlist else []):
        if wanted in {fold(n) for n in (target.name, *target.aliases)}:
            return target
    if watchlist is None:
        return Target(name.strip(), "organisation", ())
    raise MonitorError(f"{name!r} is not a name or alias in the watchlist; known targets: "
                       + ", ".join(t.name for t in watchlist.targets))


def _loads(value: str | None, default: Any) -> Any:
    return json.loads(value) if value else default


def select_items(db: sqlite_utils.Database, target: Target, date_from: str | None = None, date_to: str | None = None,
                 confirmed_only: bool = False) -> list[dict[str, Any]]:
    """Items naming ``target`` (verdict, passage or review targets), flagged or confirmed, not rejected, oldest first."""
    names = {fold(n) for n in (target.name, *target.aliases)}
    candidates = store.evidence_candidates(db)
    passages: dict[int, list[dict[str, Any]]] = {}
    for p in store.evidence_passages(db, [r["classification_id"] for r in candidates if r["classification_id"]]):
        passages.setdefault(p["classification_id"], []).append(p)
    items = []
    for r in candidates:
        active = r["decision"] in ACTIVE_DECISIONS
        if r["decision"] == "reject" or (confirmed_only and not active) or not (active or r["stigmatising"]):
            continue
        day = (r["published"] or r["first_seen_at"] or "")[:10]
        if (date_from and day < date_from) or (date_to and day > date_to):
            continue
        own = passages.get(r["classification_id"], [])
        named = (_loads(r["targets"], []) + [t for p in own for t in _loads(p["targets"], [])]
                 + (_loads(r["review_targets"], []) if active else []))
        if any(fold(t) in names for t in named):
            items.append({**r, "day": day, "passages": own})
    return items


def _categories(r: dict[str, Any]) -> list[str]:
    if r["decision"] in ACTIVE_DECISIONS and r["review_categories"]:
        chosen = _loads(r["review_categories"], [])
        return sorted(chosen if isinstance(chosen, list) else [k for k, v in chosen.items() if v >= CATEGORY_THRESHOLD],
                      key=lambda c: CATEGORIES.index(c) if c in CATEGORIES else len(CATEGORIES))
    scores = _loads(r["categories"], {})
    cats = {k for k, v in scores.items() if v >= CATEGORY_THRESHOLD} | ({r["top_category"]} if r["top_category"] else set())
    return sorted(cats, key=lambda c: (-scores.get(c, 0.0), c))


def _speaker(r: dict[str, Any]) -> tuple[str, str, bool, str]:
    """(voice, speaker, is_official, speaker type); a reviewer's relabel wins over the model."""
    active = r["decision"] in ACTIVE_DECISIONS
    voice = (r["review_voice"] if active and r["review_voice"] else r["voice"]) or ""
    speaker = (r["review_speaker"] if active and r["review_speaker"] else r["speaker"]) or ""
    official = bool(r["speaker_is_official"]) and speaker == (r["speaker"] or "")
    kind = "official" if official else ("other" if voice == "attributed" else "media")
    return voice, speaker, official, kind


def _extension(capture: dict[str, Any]) -> str:
    headers = {k.lower(): v for k, v in _loads(capture["headers"], [])}
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return ".gz"
    if encoding not in ("", "identity"):
        return ".bin"
    kind = (capture["content_type"] or "").lower()
    for needle, ext in (("html", ".html"), ("xml", ".xml"), ("json", ".json"), ("pdf", ".pdf"), ("text/plain", ".txt")):
        if needle in kind:
            return ext
    return ".bin"


def _warc_span(db: sqlite_utils.Database, capture: dict[str, Any]) -> bytes | None:
    """The capture's WARC records, from the folder they were written to, restored to, or ``<db>.warc/``."""
    if not capture["warc_file"]:
        return None
    path = locate(capture["warc_dir"], capture["warc_file"], store.database_file(db), store.warc_relocations(db))
    return read_span(path, capture["record_offset"], capture["record_length"]) if path else None


def _versions(db: sqlite_utils.Database, row: dict[str, Any]) -> list[dict[str, Any]]:
    """The article's texts (first capture, then each edit) with the verdict model's verdict on each."""
    return store.text_versions(db, row["article_id"], row["model_id"], row["model_version"]) if row["model_id"] else \
        store.text_versions(db, row["article_id"])


def _version_entry(v: dict[str, Any]) -> dict[str, Any]:
    c = v["classification"]
    return {"no": v["no"], "capture_id": v["capture_id"], "at": v["at"], "text_sha256": v["text_sha256"],
            "stigmatising": None if c is None else bool(c["stigmatising"]), "score": None if c is None else c["score"],
            "passages": [{"text": p["text"], "start": p["start"], "end": p["end"], "score": p["score"]}
                         for p in v["passages"]],
            "title": v["title"], "text": v["text"], "diff": v["diff"]}


def _iso_z(value: str) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` from a stored UTC time or an ``--as-of`` (a day means its midnight).

    Raises:
        MonitorError: not a date or time.
    """
    text = value.strip().removesuffix("Z").replace(" ", "T")
    for pattern, size in (("%Y-%m-%dT%H:%M:%S", 19), ("%Y-%m-%dT%H:%M", 16), ("%Y-%m-%d", 10)):
        try:
            return datetime.strptime(text[:size], pattern).strftime("%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            continue
    raise MonitorError(f"--as-of must be a UTC date or time like 2026-03-01 or 2026-03-01T12:00:00Z, got {value!r}")


def dossier_files(db: sqlite_utils.Database, target: Target, date_from: str | None = None, date_to: str | None = None,
                  confirmed_only: bool = False, lang: str = "es", as_of: str | None = None, pdf: bool = False
                  ) -> tuple[dict[str, bytes], list[dict[str, Any]], str]:
    """Every file of the dossier (name -> bytes, MANIFEST included), the items, and the as-of time.

    With ``pdf``, ``dossier.pdf`` too: the same data as ``dossier.html``, laid out for filing.

    Raises:
        MonitorError: nothing matches the selection, ``lang`` is unknown, or (``pdf``) the PDF
            renderer is missing (the message gives the install command).
    """
    if pdf:
        from .pdf import renderer

        renderer()   # fail before any work when WeasyPrint is missing
    if lang not in LANGS:
        raise MonitorError(f"--lang must be one of {', '.join(LANGS)}, got {lang!r}")
    rows = select_items(db, target, date_from, date_to, confirmed_only)
    if not rows:
        period = f" between {date_from or 'the start'} and {date_to or 'now'}" if date_from or date_to else ""
        raise MonitorError(f"no {'confirmed ' if confirmed_only else ''}item names {target.name}{period}")
    article_ids = [r["article_id"] for r in rows]
    captures = store.evidence_captures(db, article_ids)
    capture_ids = [c["id"] for c in captures]
    tokens = store.evidence_timestamps(db, capture_ids)
    history = store.evidence_history(db, article_ids)
    custody = store.evidence_custody(db, article_ids, capture_ids)
    files: dict[str, bytes] = {}
    ca_pems: list[str] = []
    items = []
    for no, r in enumerate(rows, 1):
        folder = f"captures/item-{no:03d}"
        item_captures = []
        for c in (c for c in captures if c["article_id"] == r["article_id"]):
            stem = f"{folder}/capture-{c['id']}"
            body = store.capture_body(db, c["id"])
            files[stem + _extension(c)] = body
            meta = {k: c[k] for k in ("url", "final_url", "status", "captured_at", "sha256", "size", "content_type",
                                      "tool_version")}
            meta.update(capture_id=c["id"], headers=_loads(c["headers"], []), redirects=_loads(c["redirects"], []),
                        body_file=stem + _extension(c))
            span = _warc_span(db, c)
            warc = None
            if span is not None:
                files[stem + ".warc.gz"] = span
                warc = {"file": stem + ".warc.gz", "source_file": c["warc_file"], "offset": c["record_offset"],
                        "length": c["record_length"], "record_id": c["record_id"], "payload_digest": c["payload_digest"]}
            meta["warc"] = warc
            stamps = []
            for t in (t for t in tokens if t["capture_id"] == c["id"]):
                files[f"{stem}.ts{t['id']}.tsr"] = t["token"]
                stamps.append({"file": f"{stem}.ts{t['id']}.tsr", "tsa_url": t["tsa_url"], "gen_time": t["gen_time"],
                               "sha256": t["sha256"]})
                if t["ca_pem"] and t["ca_pem"] not in ca_pems:
                    ca_pems.append(t["ca_pem"])
            meta["timestamps"] = stamps
            files[stem + ".http.json"] = _json_bytes(meta)
            item_captures.append(meta)
        voice, speaker, official, kind = _speaker(r)
        events = [h for h in history if h["article_id"] == r["article_id"]]
        versions = _versions(db, r)
        verdict_no = next((v["no"] for v in versions if v["version_id"] == r["version_id"]), 0)
        changes = store.smear_changes(versions)
        removed_later = next((c for c in changes if c["kind"] == "removed" and c["no"] > verdict_no), None)
        added = next((c for c in changes if c["kind"] == "added" and c["no"] == verdict_no), None)
        items.append({
            "no": no, "article_id": r["article_id"], "date": r["day"], "published": r["published"],
            "first_seen_at": r["first_seen_at"], "outlet": r["outlet"] or r["outlet_id"], "outlet_id": r["outlet_id"],
            "place": ", ".join(p for p in (r["outlet_state"], r["outlet_country"]) if p),
            "section": r["section"], "columnist": r["columnist"] or "", "author": r["author"] or "",
            "title": r["title"] or "", "url": r["url"], "canonical_url": r["canonical_url"], "text_sha256": r["text_sha256"],
            "story_id": r["story_id"], "duplicate_of": r["duplicate_of"],
            "categories": _categories(r), "voice": voice, "speaker": speaker, "speaker_is_official": official,
            "speaker_type": kind,
            "classification": None if not r["classification_id"] else {
                "model_id": r["model_id"], "model_version": r["model_version"], "classified_at": r["classified_at"],
                "stigmatising": bool(r["stigmatising"]), "score": r["score"], "categories": _loads(r["categories"], {}),
                "voice": r["voice"], "speaker": r["speaker"], "speaker_is_official": bool(r["speaker_is_official"]),
                "targets": _loads(r["targets"], [])},
            "passages": [{"text": p["text"], "start": p["start"], "end": p["end"], "score": p["score"],
                          "categories": _loads(p["categories"], {}), "voice": p["voice"], "speaker": p["speaker"],
                          "speaker_is_official": bool(p["speaker_is_official"]), "targets": _loads(p["targets"], []),
                          "version": verdict_no, "capture_id": versions[verdict_no]["capture_id"]}
                         for p in r["passages"]],
            "versions": [_version_entry(v) for v in versions],
            "smear_added": None if added is None else {"no": added["no"], "at": added["at"], "capture_id": added["capture_id"]},
            "smear_removed": None if removed_later is None else {
                "no": removed_later["no"], "at": removed_later["at"], "capture_id": removed_later["capture_id"]},
            "review": None if not r["review_id"] else {
                "decision": r["decision"], "reviewer": r["reviewer"], "at": r["reviewed_at"], "note": r["review_note"]},
            "edited": any(e["event"] == "edited" for e in events), "removed_at": r["removed_at"],
            "history": [{"event": e["event"], "at": e["at"], "capture_id": e["capture_id"], "text_sha256": e["text_sha256"],
                         "previous_text_sha256": e["previous_text_sha256"], "http_status": e["http_status"]}
                        for e in events],
            "captures": item_captures,
        })
    times = ([c["captured_at"] for c in captures] + [x["at"] for x in custody] + [e["at"] for e in history]
             + [r["reviewed_at"] for r in rows if r["reviewed_at"]] + [r["classified_at"] for r in rows if r["classified_at"]])
    as_of = _iso_z(as_of or max(times))
    meta = {"target": {"name": target.name, "kind": target.kind, "aliases": list(target.aliases)},
            "period": {"from": date_from or rows[0]["day"], "to": date_to or rows[-1]["day"]},
            "confirmed_only": confirmed_only, "as_of": as_of, "tool": store.TOOL}
    if ca_pems:
        files["timestamps/tsa-ca.pem"] = "".join(ca_pems).encode("ascii")
    files["items.json"] = _json_bytes({**meta, "items": items})
    files["items.csv"] = _items_csv(items)
    files["custody.csv"] = _custody_csv(custody)
    summaries = {lg: allegation_summary(meta, items, lg) for lg in LANGS}
    for lg in LANGS:
        files[f"summary-{lg}.txt"] = _summary_text(summaries[lg]).encode("utf-8")
    files["dossier.html"] = _render_html(meta, items, summaries[lang], lang).encode("utf-8")
    if pdf:
        from .pdf import pdf_identifier, render_pdf

        files["dossier.pdf"] = render_pdf(_render_html(meta, items, summaries[lang], lang, "dossier-pdf.html"),
                                          pdf_identifier(files["items.json"]))
    files["README.txt"] = _readme(meta, items, bool(ca_pems), pdf).encode("utf-8")
    files["MANIFEST.sha256"] = "".join(f"{hashlib.sha256(files[n]).hexdigest()}  {n}\n"
                                       for n in sorted(files)).encode("utf-8")
    return files, items, as_of


def build_dossier(db: sqlite_utils.Database, out: str | Path, target_name: str, watchlist: Watchlist | None,
                  date_from: str | None = None, date_to: str | None = None, confirmed_only: bool = False,
                  lang: str = "es", as_of: str | None = None, actor: str = "", pdf: bool = False) -> DossierResult:
    """Write the dossier zip (atomically) and log the export in the custody log; ``pdf`` adds dossier.pdf."""
    target = resolve_target(target_name, watchlist)
    files, items, stamp = dossier_files(db, target, date_from, date_to, confirmed_only, lang, as_of, pdf)
    data = zip_bytes(files, stamp)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    digest = hashlib.sha256(data).hexdigest()
    n_captures = sum(len(i["captures"]) for i in items)
    store.record_export(db, actor or store.TOOL, digest, {
        "target": target.name, "from": date_from, "to": date_to, "confirmed_only": confirmed_only, "lang": lang,
        "as_of": stamp, "items": len(items), "captures": n_captures, "file": path.name, "tool": store.TOOL,
        "pdf": pdf})
    return DossierResult(path, digest, len(items), n_captures, len(files), len(data), stamp)


def zip_bytes(files: dict[str, bytes], as_of: str) -> bytes:
    """A zip of ``files`` that depends on nothing but its arguments (sorted names, fixed times and modes)."""
    when = datetime.strptime(as_of[:19], "%Y-%m-%dT%H:%M:%S").timetuple()[:6]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=when)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name], compresslevel=6)
    return buffer.getvalue()


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _cell(value: Any) -> str:
    """A CSV cell that spreadsheets show as text: a leading = + - @ gets a ' (OWASP CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv(header: list[str], rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([[_cell(v) for v in row] for row in rows])
    return out.getvalue().encode("utf-8")


def _items_csv(items: list[dict[str, Any]]) -> bytes:
    header = ["no", "date", "outlet", "place", "section", "columnist", "author", "title", "url", "first_captured_at",
              "first_capture_sha256", "first_capture_file", "captures", "categories", "voice", "speaker",
              "speaker_type", "speaker_is_official", "passages", "review_decision", "reviewer", "reviewed_at",
              "edited", "edited_at", "removed_at", "model", "article_id"]
    rows = []
    for i in items:
        first = i["captures"][0] if i["captures"] else {}
        review = i["review"] or {}
        model = i["classification"] or {}
        rows.append([i["no"], i["date"], i["outlet"], i["place"], i["section"], i["columnist"], i["author"], i["title"],
                     i["url"], first.get("captured_at"), first.get("sha256"), first.get("body_file"), len(i["captures"]),
                     "; ".join(i["categories"]), i["voice"], i["speaker"], i["speaker_type"],
                     "yes" if i["speaker_is_official"] else "no", " […] ".join(p["text"] for p in i["passages"]),
                     review.get("decision"), review.get("reviewer"), review.get("at"), "yes" if i["edited"] else "no",
                     "; ".join(e["at"] for e in i["history"] if e["event"] == "edited"), i["removed_at"],
                     f"{model.get('model_id', '')} {model.get('model_version', '')}".strip(), i["article_id"]])
    return _csv(header, rows)


def _custody_csv(custody: list[dict[str, Any]]) -> bytes:
    header = ["id", "at", "action", "actor", "article_id", "capture_id", "ref_id", "sha256", "input_sha256", "details"]
    return _csv(header, [[c[k] for k in header] for c in custody])


# --- the allegation summary, the timeline and the HTML ------------------------------------------

def allegation_summary(meta: dict[str, Any], items: list[dict[str, Any]], lang: str) -> list[tuple[str, list[str]]]:
    """Sections of a UN Special Procedures allegation: victims, perpetrators, dates and places, facts, national action."""
    es = lang == "es"
    target = meta["target"]
    period = meta["period"]
    aliases = f" ({', '.join(target['aliases'])})" if target["aliases"] else ""
    officials = Counter(i["speaker"] for i in items if i["speaker_type"] == "official" and i["speaker"])
    outlets = Counter(i["outlet"] for i in items)
    media = Counter(f"{i['outlet']}{' — ' + i['columnist'] if i['columnist'] else ''}" for i in items
                    if i["speaker_type"] == "media")
    others = Counter(i["speaker"] for i in items if i["speaker_type"] == "other" and i["speaker"])
    cats = Counter(c for i in items for c in i["categories"])
    edited = [i["no"] for i in items if i["edited"]]
    removed = [i["no"] for i in items if i["removed_at"]]
    stories = Counter(i["story_id"] for i in items if i["story_id"])
    spread = sum(n for n in stories.values() if n > 1)

    def listing(counter: Counter[str], none: str) -> str:
        return "; ".join(f"{k} ({v})" for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))) or none

    places = sorted({f"{i['outlet']}: {i['place'] or 'MX'}" for i in items})
    cat_text = listing(Counter({label(k, lang): v for k, v in cats.items()}), label("none", lang))
    if es:
        return [
            ("1. Presunta(s) víctima(s)", [f"{target['name']}{aliases}, señalada en {len(items)} elemento(s) publicados "
                                          f"entre {period['from']} y {period['to']}."]),
            ("2. Presuntos perpetradores", [
                f"Actores estatales (funcionarios públicos citados): {listing(officials, 'ninguno identificado')}.",
                f"Actores no estatales — medios y columnistas (voz autoral): {listing(media, 'ninguno')}.",
                f"Actores no estatales — otros emisores citados: {listing(others, 'ninguno')}."]),
            ("3. Fechas y lugares", [f"Del {period['from']} al {period['to']}, en {len(outlets)} medio(s): "
                                     + "; ".join(places) + ". Fechas de cada elemento en la sección de elementos."]),
            ("4. Descripción de los hechos y del patrón", [
                f"{len(items)} publicación(es) en {len(outlets)} medio(s) presentan a {target['name']} con mensajes "
                f"estigmatizantes. Categorías: {cat_text}.",
                f"{sum(officials.values())} elemento(s) atribuyen las expresiones a funcionarios públicos." if officials
                else "Ningún elemento atribuye las expresiones a un funcionario público identificado.",
                (f"{spread} elemento(s) son copias de una misma nota publicada en varios medios." if spread else
                 "No se detectaron copias de una misma nota en varios medios."),
                f"Editados tras la captura: {', '.join(f'#{n}' for n in edited) or 'ninguno'}. "
                f"Retirados de la web tras la captura: {', '.join(f'#{n}' for n in removed) or 'ninguno'}.",
                "Cada elemento conserva la página tal como se sirvió, con su hash SHA-256 y la hora UTC de captura."]),
            ("5. Acciones emprendidas a nivel nacional", [
                "[Por completar por la organización: denuncias presentadas, medidas del Mecanismo de Protección, "
                "respuesta de las autoridades.]"]),
        ]
    return [
        ("1. Alleged victim(s)", [f"{target['name']}{aliases}, named in {len(items)} item(s) published between "
                                  f"{period['from']} and {period['to']}."]),
        ("2. Alleged perpetrators", [
            f"State actors (public officials quoted): {listing(officials, 'none identified')}.",
            f"Non-State actors — outlets and columnists (authorial voice): {listing(media, 'none')}.",
            f"Non-State actors — other speakers quoted: {listing(others, 'none')}."]),
        ("3. Dates and places", [f"From {period['from']} to {period['to']}, in {len(outlets)} outlet(s): "
                                 + "; ".join(places) + ". Each item's date is given in the items section."]),
        ("4. Description of the facts and the pattern", [
            f"{len(items)} publication(s) in {len(outlets)} outlet(s) present {target['name']} in stigmatising "
            f"terms. Categories: {cat_text}.",
            f"{sum(officials.values())} item(s) attribute the statements to public officials." if officials
            else "No item attributes the statements to an identified public official.",
            (f"{spread} item(s) are copies of one story published by several outlets." if spread else
             "No copies of one story across several outlets were detected."),
            f"Edited after capture: {', '.join(f'#{n}' for n in edited) or 'none'}. "
            f"Removed from the web after capture: {', '.join(f'#{n}' for n in removed) or 'none'}.",
            "Each item keeps the page as served, with its SHA-256 hash and UTC capture time."]),
        ("5. Action taken at the national level", [
            "[To be completed by the submitting organisation: complaints filed, Protection Mechanism measures, "
            "authorities' response.]"]),
    ]


def _summary_text(sections: list[tuple[str, list[str]]]) -> str:
    return "\n\n".join(f"{heading}\n" + "\n".join(f"  {p}" for p in paras) for heading, paras in sections) + "\n"


def _bucket(day: str, monthly: bool) -> str:
    d = date.fromisoformat(day)
    return d.strftime("%Y-%m") if monthly else (d - timedelta(days=d.weekday())).isoformat()


def timeline_svg(days: list[str], lang: str) -> str:
    """Items per week (per month beyond 26 weeks) as inline SVG bars; empty periods are shown."""
    first, last = date.fromisoformat(min(days)), date.fromisoformat(max(days))
    monthly = (last - first).days > 26 * 7
    buckets: list[str] = []
    cursor = first
    while cursor <= last + timedelta(days=7):
        key = _bucket(cursor.isoformat(), monthly)
        if key not in buckets and key <= _bucket(last.isoformat(), monthly):
            buckets.append(key)
        cursor += timedelta(days=7)
    counts = Counter(_bucket(d, monthly) for d in days)
    top = max(counts.values())
    width, height, left = 720, 150, 30
    step = (width - left) / len(buckets)
    unit = ("mes", "month") if monthly else ("semana del", "week of")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 {width} {height + 40}" '
             f'role="img" aria-label="{label("timeline", lang)}">',
             f'<line x1="{left}" y1="{height}" x2="{width}" y2="{height}" stroke="#333"/>',
             f'<text x="{left - 4}" y="12" text-anchor="end" font-size="10">{top}</text>']
    every = max(1, len(buckets) // 12)
    for n, key in enumerate(buckets):
        x = left + n * step
        value = counts.get(key, 0)
        h = value / top * (height - 10)
        if value:
            bar = min(step * 0.8, 48.0)
            parts.append(f'<rect x="{x + (step - bar) / 2:.1f}" y="{height - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="#8b1e3f"><title>{unit[LANGS.index(lang)]} {key}: {value}</title></rect>')
        if n % every == 0:
            parts.append(f'<text x="{x + step / 2:.1f}" y="{height + 14}" text-anchor="middle" font-size="9">{key}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _render_html(meta: dict[str, Any], items: list[dict[str, Any]], summary: list[tuple[str, list[str]]],
                 lang: str, template: str = "dossier.html") -> str:
    """``template`` (dossier.html, or dossier-pdf.html for the PDF) filled with the dossier's data."""
    env = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")), autoescape=True,
                      undefined=StrictUndefined, keep_trailing_newline=True)
    from markupsafe import Markup

    def by(key: Any) -> list[tuple[str, int]]:
        counter = Counter(v for i in items for v in key(i))
        return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))

    period = meta["period"]
    return env.get_template(template).render(
        t=lambda key: label(key, lang), lang=lang, meta=meta, items=items, summary=summary,
        by_category=by(lambda i: [label(c, lang) for c in i["categories"]]), by_outlet=by(lambda i: [i["outlet"]]),
        by_speaker=by(lambda i: [label(i["speaker_type"], lang)]),
        # built from numbers and escaped labels only: safe to embed
        timeline=Markup(timeline_svg([i["date"] for i in items], lang)), highlight=highlight_segments,
        safe_url=lambda u: u if isinstance(u, str) and u.lower().startswith(("http://", "https://")) else "",
        pdf_subject=label("pdf.subject", lang).format(n=len(items), target=meta["target"]["name"],
                                                      start=period["from"], end=period["to"]),
        # keywords are comma-separated: "disloyalty, foreign agents" must stay one
        pdf_keywords=[label(c, lang).replace(",", " /") for c in sorted({c for i in items for c in i["categories"]})])


def _readme(meta: dict[str, Any], items: list[dict[str, Any]], has_ca: bool, has_pdf: bool = False) -> str:
    first = items[0]["captures"][0] if items[0]["captures"] else None
    example = f"sha256sum {first['body_file']}   # must print {first['sha256']}" if first else ""
    tsa = ("  openssl ts -verify -digest <SHA-256 of the capture> -in captures/item-NNN/capture-N.tsN.tsr "
           "-CAfile timestamps/tsa-ca.pem\n  (better: -CAfile with the TSA's CA certificate obtained from the TSA itself)\n"
           if has_ca else "  (no RFC 3161 timestamps in this dossier)\n")
    pdf = ("  dossier.pdf         the same dossier as PDF (A4, PDF/A-2b) to file with a communication\n"
           if has_pdf else "")
    return f"""Stigmatisation dossier / Expediente de estigmatización
Target / Objetivo: {meta['target']['name']}
Period / Periodo: {meta['period']['from']} .. {meta['period']['to']}
Evidence as of / Evidencia al: {meta['as_of']} (UTC)
Made by / Generado por: {meta['tool']}
Items / Elementos: {len(items)}

CONTENTS
  dossier.html        the dossier (open in a browser; print to PDF from there)
{pdf}  summary-es.txt      summary laid out like a UN allegation letter (Spanish)
  summary-en.txt      the same summary in English
  items.csv, items.json   one row per item: outlet, date, title, URL, passages, categories,
                      speaker, review, edits and removals, captures with their SHA-256
  captures/item-NNN/  for every capture of the item:
      capture-N.html (.xml/.gz/.bin)  the exact bytes the server sent (the evidentiary copy)
      capture-N.http.json  URL requested, final URL, redirects, status, headers, UTC time, SHA-256
      capture-N.warc.gz    the same capture as WARC records (response, request, metadata), replayable
                           with standard web-archive tools (pywb, ReplayWeb.page, warcio)
      capture-N.tsN.tsr    an RFC 3161 timestamp of the capture's SHA-256, when one was obtained
  custody.csv         chain of custody: capture, extraction, classification, review, timestamp
                      steps for these items: who or what, when (UTC), with the hashes involved
  MANIFEST.sha256     the SHA-256 of every other file

HOW TO VERIFY (standard tools, no need to trust this program)
  1. Unzip, then in the unzipped folder:
       sha256sum -c MANIFEST.sha256          (Linux; macOS: shasum -a 256 -c MANIFEST.sha256)
     Every line must say OK. Windows PowerShell: Get-FileHash -Algorithm SHA256 FILE
  2. A capture's hash must equal the one recorded when it was captured (items.csv, custody.csv):
       {example}
  3. WARC records: warcio check captures/item-NNN/capture-N.warc.gz  (payload digest = SHA-256)
  4. Timestamps:
{tsa}  5. Or all at once: monitor verify THIS.zip

NOTES
  - Times are UTC. "Removed" means the URL answered 404/410 on a later check; "edited" means the
    extracted text changed on a later check: every capture is kept and included.
  - In items.csv a cell starting with = + - or @ is prefixed with ' so spreadsheets do not run it
    as a formula; items.json has the exact text.
  - The summary and categories come from an automatic classifier and human review; the
    captures are the evidence.
"""
