"""Report formats: each turns reports into one string (the CLI writes it to stdout; model: pip-audit).

``text`` and ``json`` live in :mod:`lokin_doctor.render`; ``junit`` and ``markdown`` here. A run with
several targets passes every report; a single target passes a one-item sequence. ``--redact`` is applied
to the reports before any renderer sees them (:mod:`lokin_doctor.formats.redact`), so every format
hides the same things with the same placeholders.
"""

from __future__ import annotations

from collections.abc import Sequence

from lokin_doctor.model import Report

FORMATS = ("text", "json", "junit", "markdown")


def render(
    fmt: str,
    reports: Sequence[Report],
    *,
    verbose: bool = False,
    colors: bool = False,
    fail_on_warn: bool = False,
    many: bool | None = None,
) -> str:
    """The report(s) in ``fmt`` as one string ending in a newline.

    ``colors`` styles ``text`` (the caller decides it from its environment); ``fail_on_warn`` makes a warning
    a JUnit ``<failure>`` (``--fail-on warn``), as it makes the exit code 1; ``many`` forces JSON's
    several-targets shape for a single report (``--targets``).
    """
    if fmt == "text":
        from lokin_doctor.render import to_text

        return to_text(reports, verbose, colors=colors)
    if fmt == "json" and many:
        from lokin_doctor.render import to_json_many

        return to_json_many(reports) + "\n"
    if fmt == "json":
        from lokin_doctor.render import to_json, to_json_many

        return (to_json(reports[0]) if len(reports) == 1 else to_json_many(reports)) + "\n"
    if fmt == "junit":
        from lokin_doctor.formats.junit import to_junit

        return to_junit(reports, fail_on_warn=fail_on_warn)
    if fmt == "markdown":
        from lokin_doctor.formats.markdown import to_markdown

        return to_markdown(reports)
    raise ValueError(f"unknown format {fmt!r}")
