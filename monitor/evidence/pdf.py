"""The dossier as a PDF a lawyer can file: WeasyPrint renders HTML made from the dossier's data.

Why WeasyPrint and not the headless Chromium the browser tests use: WeasyPrint writes the PDF's
``/CreationDate`` and ``/ModDate`` only from ``<meta name="dcterms.created|modified">`` (we put
the dossier's as-of time there) and takes the document ``/ID`` as an argument, so two exports
of the same selection are byte-identical with no post-processing. Chromium's ``--print-to-pdf``
stamps both dates from the clock (measured: two prints of one page differ) and would need the
PDF rewritten afterwards. WeasyPrint is a pip package on top of Debian's Pango; it also writes
PDF/A metadata (XMP) and embeds subsets of every font.

Nothing is fetched while rendering: the URL fetcher refuses every URL, so an article URL, a
link or anything else in the data can never make the renderer reach out.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from typing import Any

from ..errors import MonitorError

WEASYPRINT = "weasyprint==70.0"   # keep in step with pyproject.toml
PDF_VARIANT = "pdf/a-2b"          # PDF/A-2 level B: XMP metadata, embedded fonts, sRGB output intent
INSTALL = (f"pip install '{WEASYPRINT}' (or `make setup`), and the system libraries: "
           "apt-get install -y libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core "
           "(or `make pdf` as root)")


class PdfRendererMissing(MonitorError):
    """WeasyPrint or the system libraries it needs (Pango) are not installed."""


def renderer() -> Any:
    """The ``weasyprint`` module, or a clear error with the install command.

    Raises:
        PdfRendererMissing: the package is missing, or Pango / HarfBuzz cannot be loaded.
    """
    noise = io.StringIO()   # WeasyPrint prints a troubleshooting banner when a library is missing
    try:
        with contextlib.redirect_stdout(noise):
            import weasyprint
            import weasyprint.urls
    except ImportError as e:
        raise PdfRendererMissing(f"--pdf needs the PDF renderer WeasyPrint, which is not installed ({e}). "
                                 f"Install: {INSTALL}") from e
    except OSError as e:
        raise PdfRendererMissing(f"--pdf needs WeasyPrint's system libraries, which cannot be loaded ({e}). "
                                 f"Install: {INSTALL}") from e
    return weasyprint


def _no_fetching(weasyprint: Any) -> Any:
    """A WeasyPrint URL fetcher that fails the render on any URL: the PDF never depends on the network."""

    class NoFetching(weasyprint.urls.URLFetcher):   # type: ignore[misc,name-defined]
        def fetch(self, url: str, headers: Any = None) -> Any:
            raise ValueError(f"the dossier PDF fetches nothing; refused {url}")

    return NoFetching(fail_on_errors=True)


def pdf_identifier(seed: bytes) -> bytes:
    """The PDF's permanent ``/ID``: 32 hex digits of the SHA-256 of ``seed`` (the dossier's items.json)."""
    return hashlib.sha256(seed).hexdigest()[:32].encode("ascii")


def render_pdf(html: str, identifier: bytes) -> bytes:
    """``html`` as a PDF/A-2b document whose bytes depend only on ``html`` and ``identifier``.

    Dates, title, author, subject and language come from the HTML's ``<title>``, ``<html lang>``
    and ``<meta>`` elements (``dcterms.created`` / ``dcterms.modified``), never the clock.

    Raises:
        PdfRendererMissing: WeasyPrint or its libraries are missing (with the install command).
        MonitorError: the renderer failed on this document.
    """
    weasyprint = renderer()
    try:
        document = weasyprint.HTML(string=html, base_url=None, url_fetcher=_no_fetching(weasyprint))
        return bytes(document.write_pdf(pdf_variant=PDF_VARIANT, pdf_identifier=identifier))
    except weasyprint.urls.FatalURLFetchingError as e:   # a BaseException: our refusal, raised as ``__cause__``
        raise MonitorError(f"dossier.pdf: {e.__cause__ or e}") from e
    except Exception as e:   # WeasyPrint raises many kinds; name the step
        raise MonitorError(f"dossier.pdf: WeasyPrint could not render the dossier ({type(e).__name__}: {e})") from e
