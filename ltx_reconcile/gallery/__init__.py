"""The gallery: a static HTML page of every image in the specs, or of what a plan changes.

`model.py` builds the gallery from specs, state, store and plan (pure); `thumbs.py` makes
and caches the thumbnails; `html.py` renders and writes the page. The workspace wires them
(`Workspace.gallery`); nothing here reads the environment, writes the state, or prints.
"""

from __future__ import annotations

from ltx_reconcile.gallery.html import render_page, write_page
from ltx_reconcile.gallery.model import (
    STATUSES,
    Gallery,
    GalleryGroup,
    GalleryImage,
    GalleryPage,
    GalleryStatus,
    PlannedChange,
    PlanSummary,
    build_gallery,
)
from ltx_reconcile.gallery.thumbs import ThumbnailCache, picture_sources

__all__ = [
    "STATUSES",
    "Gallery",
    "GalleryGroup",
    "GalleryImage",
    "GalleryPage",
    "GalleryStatus",
    "PlanSummary",
    "PlannedChange",
    "ThumbnailCache",
    "build_gallery",
    "picture_sources",
    "render_page",
    "write_page",
]
