"""Self-contained HTML reports (analysis and validation): tables, embedded images, one page."""

from __future__ import annotations

import base64
import html
from pathlib import Path

CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}table{border-collapse:collapse;"
    "margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;font-size:13px}img{max-width:48%;margin:4px}"
    "img.wide{max-width:98%}"
)


def table(rows: list[list], head: list[str]) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def embed_image(path: Path, css_class: str = "") -> str:
    """An <img> carrying the file's bytes (PNG or JPEG), so the page needs nothing beside it."""
    mime = "image/jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "image/png"
    data = base64.b64encode(path.read_bytes()).decode()
    cls = f' class="{css_class}"' if css_class else ""
    return f'<img{cls} alt="{html.escape(path.name)}" src="data:{mime};base64,{data}">'


def page(title: str, body: list[str]) -> str:
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>" + "\n".join(body) + "</body></html>"
    )
