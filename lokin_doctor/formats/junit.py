"""JUnit XML (the format GitLab, Jenkins and GitHub Actions show as test results), standard library only.

One ``testsuite`` per target, one ``testcase`` per check: ``ok`` passes, ``skip`` is ``<skipped>``,
``fail`` is a ``<failure>``, and so is ``warn`` under ``--fail-on warn`` (the exit code and the XML agree:
otherwise a warning passes, its words in ``<system-out>``). A ``<failure>``'s ``type`` is the cause code (English, stable) and whose
message is the summary and the fix. Times are in seconds.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime

from lokin_doctor import __version__
from lokin_doctor.i18n import _
from lokin_doctor.model import CheckResult, Report, Status


def _evidence_text(result: CheckResult) -> str:
    from lokin_doctor.render import fmt_value

    return "\n".join(f"{key}: {fmt_value(value)}" for key, value in result.evidence.items())


def _failed(result: CheckResult, fail_on_warn: bool) -> bool:
    return result.status is Status.FAIL or (fail_on_warn and result.status is Status.WARN)


def _testcase(suite: ET.Element, report: Report, result: CheckResult, fail_on_warn: bool) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        name=result.id,
        classname=f"lokin-doctor.{result.id}",
        time=f"{result.duration_ms / 1000:.3f}",
    )
    if result.status is Status.SKIP:
        ET.SubElement(case, "skipped", message=result.summary)
    elif _failed(result, fail_on_warn):
        label = _("warning") if result.status is Status.WARN else _("failure")
        fix = _("Fix:")
        message = _("{status}: {summary} — {fix} {hint}").format(
            status=label, summary=result.summary, fix=fix, hint=result.hint or ""
        )
        failure = ET.SubElement(case, "failure", type=result.code or "", message=message)
        failure.text = f"{result.summary}\n{fix} {result.hint or ''}"
        if report.root_cause is not None and report.root_cause.check == result.id:
            failure.text += "\n" + _("This is the root cause.")
    evidence = _evidence_text(result)
    if result.status is Status.WARN and not fail_on_warn:  # a passing case that still says its warning
        said = _("{status}: {summary} — {fix} {hint}").format(
            status=_("warning"), summary=result.summary, fix=_("Fix:"), hint=result.hint or ""
        )
        evidence = said + ("\n" + evidence if evidence else "")
    if result.note:  # an advisory: shown, never a <failure>
        evidence = _("note: {note}").format(note=result.note) + ("\n" + evidence if evidence else "")
    if evidence:
        ET.SubElement(case, "system-out").text = evidence


def to_junit(reports: Sequence[Report], *, fail_on_warn: bool = False) -> str:
    root = ET.Element("testsuites", name="lokin-doctor")
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    total_time = 0.0
    stamp = datetime.now(UTC).replace(microsecond=0).isoformat()
    for report in reports:
        failures = sum(_failed(r, fail_on_warn) for r in report.results)
        skipped = sum(r.status is Status.SKIP for r in report.results)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=report.target,
            tests=str(len(report.results)),
            failures=str(failures),
            errors="0",
            skipped=str(skipped),
            time=f"{report.duration_ms / 1000:.3f}",
            timestamp=stamp,
        )
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="lokin-doctor.version", value=__version__)
        ET.SubElement(props, "property", name="status", value=report.status.value)
        if report.root_cause is not None:
            ET.SubElement(props, "property", name="root_cause", value=report.root_cause.code)
        for result in report.results:
            _testcase(suite, report, result, fail_on_warn)
        totals["tests"] += len(report.results)
        totals["failures"] += failures
        totals["skipped"] += skipped
        total_time = max(total_time, report.duration_ms / 1000)  # targets run at the same time
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("errors", "0")
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
