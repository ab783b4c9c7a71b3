"""docs/causes.md, generated from the registry: one table per layer, in the chain's order.

    python -m lokin_doctor.causes.doc > docs/causes.md

``tests/test_registry_agreement.py`` fails when the committed file is not what this renders. The per-check
``<id>.timeout`` causes (declared by :func:`lokin_doctor.causes.internal.check_timeout`) share one text and
are one row.
"""

from __future__ import annotations

import sys

from lokin_doctor.causes import Cause, Layer, all_causes

#: The layers in the order the chain meets them (the docs' order).
LAYER_ORDER = (
    Layer.DNS,
    Layer.FORWARD_PROXY,
    Layer.TCP,
    Layer.HOST,
    Layer.TLS,
    Layer.HTTP,
    Layer.SOCKETIO,
    Layer.SESSION,
    Layer.PRODUCTION,
    Layer.PLATFORM,
    Layer.PROXY_CONFIG,
    Layer.BROWSER,
    Layer.TOOLS,
    Layer.SENTINEL,
    Layer.INTERNAL,
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(c: Cause, code: str | None = None) -> str:
    tags = ", ".join(sorted(t.value for t in c.tags))
    return (
        f"| `{code or c.code}` | {'/'.join(c.statuses)} | {_cell(c.meaning)} | {_cell(c.fix)} | "
        f"[{c.doc}]({c.doc}) | {tags} |"
    )


def render_markdown() -> str:
    """The whole page (English: the registry's own texts; ``lokin-doctor explain CODE --lang fr`` has them in
    French)."""
    every = list(all_causes())
    timeouts = [c for c in every if c.layer is Layer.INTERNAL and c.code.endswith(".timeout")]
    lines = [
        "# Cause codes",
        "",
        "Every code the doctor reports, generated from the registry (`lokin_doctor/causes/`) by",
        "`python -m lokin_doctor.causes.doc > docs/causes.md`; do not edit by hand. `lokin-doctor explain CODE`",
        "prints one in the user's language, `lokin-doctor explain --list` lists them. The pages linked tell",
        "more: what each check looks at, and the evidence each code comes with.",
        "",
        f"{len(every)} codes. Tags are the relations other checks read (see `lokin_doctor.causes.Tag`).",
    ]
    for layer in LAYER_ORDER:
        rows = [c for c in every if c.layer is layer and c not in timeouts]
        if layer is Layer.INTERNAL and timeouts:
            rows.append(timeouts[0])
        if not rows:
            continue
        lines += [
            "",
            f"## {layer.value}",
            "",
            "| code | status | meaning | usual fix | more | tags |",
            "|---|---|---|---|---|---|",
        ]
        for c in rows:
            lines.append(_row(c, "<check>.timeout" if c in timeouts else None))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
