"""Report formats other than the terminal's: each module turns reports into one string.

``text`` and ``json`` live in :mod:`lokin_doctor.render`; ``junit`` and ``markdown`` here. A run with
several targets passes every report; a single target passes a one-item sequence. ``--redact`` is applied
to the reports before any renderer sees them (:mod:`lokin_doctor.formats.redact`), so every format
hides the same things with the same placeholders.
"""

from __future__ import annotations

from collections.abc import Sequence

from lokin_doctor.model import Report

FORMATS = ("text", "json", "junit", "markdown")


def render(fmt: str, reports: Sequence[Report]) -> str:
    """The report(s) in ``fmt`` (json, junit or markdown) as one string ending in a newline."""
    if fmt == "json":
        from lokin_doctor.render import to_json, to_json_many

        return (to_json(reports[0]) if len(reports) == 1 else to_json_many(reports)) + "\n"
    if fmt == "junit":
        from lokin_doctor.formats.junit import to_junit

        return to_junit(reports)
    if fmt == "markdown":
        from lokin_doctor.formats.markdown import to_markdown

        return to_markdown(reports)
    raise ValueError(f"unknown format {fmt!r}")
