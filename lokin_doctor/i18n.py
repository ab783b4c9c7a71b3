"""Translations: gettext catalogs in ``lokin_doctor/locale``, the language chosen once, lazily.

The language is ``--lang en|fr`` when given (read from the command line before Click parses it, because
option help texts are built when ``cli`` is imported), else French when the first of ``LC_ALL``,
``LC_MESSAGES``, ``LANG`` that is set starts with ``fr``, else English. The catalog is loaded on the first
``_()`` call. Click's and Typer's own texts ("Usage:", "Options", error messages) go through the standard
``gettext.gettext`` of the default domain: :func:`patch_click` points them at our catalog.

Cause codes, JSON keys and JUnit ``type`` attributes never go through here: scripts match on them.
"""

from __future__ import annotations

import gettext
import os
import sys
from collections.abc import Sequence
from pathlib import Path

DOMAIN = "lokin_doctor"
LOCALE_DIR = Path(__file__).with_name("locale")
LANGUAGES = ("en", "fr")

_forced: str | None = None
_translation: gettext.NullTranslations | None = None


def env_language(environ: dict[str, str] | None = None) -> str:
    """``fr`` when the first set of LC_ALL, LC_MESSAGES, LANG starts with ``fr``; else ``en``."""
    env = os.environ if environ is None else environ
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(var)
        if value:
            return "fr" if value.lower().startswith("fr") else "en"
    return "en"


def set_language(lang: str | None) -> None:
    """Force a language (``en``/``fr``), or ``None`` to follow the environment again."""
    global _forced, _translation
    _forced = lang
    _translation = None


def language() -> str:
    return _forced or env_language()


def translation() -> gettext.NullTranslations:
    global _translation
    if _translation is None:
        lang = language()
        if lang == "en":
            _translation = gettext.NullTranslations()
        else:
            _translation = gettext.translation(DOMAIN, LOCALE_DIR, languages=[lang], fallback=True)
    return _translation


def _(message: str) -> str:
    """The message in the chosen language (English when no translation exists)."""
    return translation().gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translation().ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Mark a message for extraction without translating it now (module-level constants)."""
    return message


def lang_from_argv(argv: Sequence[str]) -> str | None:
    """The value of ``--lang X`` / ``--lang=X`` on the command line (the last one wins), else None."""
    found: str | None = None
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--lang" and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith("--lang="):
            found = arg.partition("=")[2]
    return found


def setup_from_argv(argv: Sequence[str] | None = None) -> None:
    """Choose the language from ``--lang`` (if valid) before any help text is built."""
    lang = lang_from_argv(sys.argv[1:] if argv is None else argv)
    if lang in LANGUAGES:
        set_language(lang)


def patch_click() -> None:
    """Route Click's and Typer's ``gettext`` calls (``from gettext import gettext as _``) to our catalog.

    Their ``_`` is looked up when a help page or an error is formatted, so patching the imported
    modules before the app runs is enough; ``--lang`` then wins over the environment for them too.
    """
    for name, module in list(sys.modules.items()):
        if module is None or not (name.startswith(("typer", "click"))):
            continue
        if getattr(module, "_", None) is gettext.gettext:
            module._ = _  # type: ignore[attr-defined]
        if getattr(module, "ngettext", None) is gettext.ngettext:
            module.ngettext = ngettext  # type: ignore[attr-defined]
