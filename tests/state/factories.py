"""Record factories: plausible rows, with any field overridden by keyword."""

from __future__ import annotations

from dataclasses import replace

from ltx_reconcile.state.records import ArtifactRecord, ImageRecord, OutputStat


def make_image(name: str = "hero", **changes: object) -> ImageRecord:
    """An image record with plausible values; keyword arguments override fields."""
    record = ImageRecord(
        name=name,
        key=f"k1:{name}",
        digest=None,
        output=f"out/{name}.png",
        status="pending",
        inputs={"prompt": f"a picture of {name}", "seed": 7, "model": "flux"},
        output_stat=None,
        updated_at=1_700_000_000.0,
    )
    return record._replace(**changes)  # type: ignore[arg-type]


def make_artifact(digest: str = "ab" * 32, **changes: object) -> ArtifactRecord:
    """An artifact record with plausible values; keyword arguments override fields."""
    record = ArtifactRecord(
        digest=digest,
        key="k1:hero",
        size=1234,
        mime="image/png",
        width=1024,
        height=768,
        job_id="email:a@example.com:1-type:image",
        model="flux",
        email="a@example.com",
        cost=28.0,
        created_at=1_700_000_000.0,
        source="generated",
        request={"prompt": "a picture of hero", "seed": 7},
    )
    return replace(record, **changes)  # type: ignore[arg-type]


def present_image(name: str, digest: str) -> ImageRecord:
    """An image that has its artifact and a materialised output file."""
    return make_image(
        name, digest=digest, status="present", output_stat=OutputStat(1234, 10**18, 42)
    )
