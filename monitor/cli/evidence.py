"""Evidence: ``export dossier`` and ``verify``."""

from __future__ import annotations

from typing import Any

import click

from .main import Context, cli, pass_ctx


# --- evidence: dossiers and their verification -------------------------------------------------

@cli.group()
def export() -> None:
    """Export evidence for lawyers (a dossier for UN / IACHR communications)."""


@export.command("dossier")
@click.option("--target", required=True, help="Watchlist name or alias of the person or organisation.")
@click.option("--from", "date_from", type=click.DateTime(["%Y-%m-%d"]), help="First day (YYYY-MM-DD, by publication date).")
@click.option("--to", "date_to", type=click.DateTime(["%Y-%m-%d"]), help="Last day (YYYY-MM-DD), inclusive.")
@click.option("--confirmed-only", is_flag=True, help="Only items a reviewer confirmed (default: flagged, not rejected).")
@click.option("--lang", type=click.Choice(["es", "en"]), default="es", show_default=True,
              help="Language of dossier.html and dossier.pdf.")
@click.option("--as-of", help="UTC time printed as the dossier's date (default: the latest time in the selection).")
@click.option("--watchlist", type=click.Path(exists=True, dir_okay=False),
              help="Watchlist file (default: the classifier definition's).")
@click.option("--by", "actor", help="Who exports, for the custody log (default: the OS user name).")
@click.option("--pdf", is_flag=True,
              help="Add dossier.pdf (A4, PDF/A-2b, in --lang) to the zip; needs WeasyPrint and Pango (`make pdf`).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The zip to write.")
@pass_ctx
def export_dossier(obj: Context, target: str, date_from: Any, date_to: Any, confirmed_only: bool, lang: str,
                   as_of: str | None, watchlist: str | None, actor: str | None, pdf: bool, out: str) -> None:
    """Write a dossier zip for one target: HTML (and PDF), summary for an allegation letter, items, captures, custody.

    Same database and options give a byte-identical zip (with --pdf: on the same WeasyPrint,
    Pango and fonts). Check it with `monitor verify`, or `sha256sum -c MANIFEST.sha256` in the
    unzipped folder (see docs/evidence.md).

    \b
    Example:
      monitor --db monitor.db export dossier --target "Centro Prodh" --from 2026-01-01 --confirmed-only --out prodh.zip
      monitor --db monitor.db export dossier --target "Centro Prodh" --lang en --pdf --out prodh.zip
    """
    import time as clock

    from ..classifier.registry import load_spec
    from ..classifier.targets import Watchlist
    from ..evidence.dossier import build_dossier

    path = watchlist or load_spec(obj.classifier_name).watchlist
    started = clock.monotonic()
    result = build_dossier(obj.db(), out, target, Watchlist.load(path) if path else None,
                           date_from.strftime("%Y-%m-%d") if date_from else None,
                           date_to.strftime("%Y-%m-%d") if date_to else None, confirmed_only, lang, as_of,
                           actor or _os_user(), pdf)
    click.echo(f"{result.path}: {result.items} item(s), {result.captures} capture(s), {result.files} files, "
               f"{result.size:,} bytes in {clock.monotonic() - started:.1f}s; as of {result.as_of}\n"
               f"SHA-256 {result.sha256}")


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in this environment
        return "unknown"


@cli.command()
@click.argument("dossier", type=click.Path(exists=True))
@click.option("--tsa-ca", type=click.Path(exists=True, dir_okay=False),
              help="The TSA's CA certificate to check timestamps against (default: the one in the dossier).")
def verify(dossier: str, tsa_ca: str | None) -> None:
    """Re-check every hash of a dossier (zip or unzipped folder); exit 1 naming each file that fails.

    \b
    Example:
      monitor verify prodh.zip
      monitor verify prodh/ --tsa-ca tsa-ca.pem
    """
    from ..evidence.verify import verify_dossier

    report = verify_dossier(dossier, tsa_ca)
    for note in report.notes:
        click.echo(f"note: {note}")
    for problem in report.problems:
        click.echo(f"FAILED {problem}", err=True)
    if not report.ok:
        raise SystemExit(1)
    click.echo(f"OK: {report.files} files, {report.captures} captures, {report.warc_records} WARC records, "
               f"{report.tokens} timestamp token(s) verified")


