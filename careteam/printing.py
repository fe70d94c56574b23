"""Printed pages as PDF: one way to turn a rendered print page into the PDF answer."""

from __future__ import annotations

from django.contrib.staticfiles import finders
from django.http import HttpResponse


def pdf_response(html: str, *, filename: str) -> HttpResponse:
    """The page `html` as an inline PDF (WeasyPrint, css/print.css), never cached."""
    from weasyprint import CSS, HTML  # loads Pango: only when a PDF is asked for

    pdf = HTML(string=html).write_pdf(stylesheets=[CSS(filename=finders.find("css/print.css"))])
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response
