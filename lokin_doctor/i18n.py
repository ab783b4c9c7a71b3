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
#: The cause registry's meanings and fixes (lokin_doctor/causes) have a catalog of their own: one kind of
#: knowledge, one file to translate; it is the main catalog's fallback.
CAUSES_DOMAIN = "lokin_doctor_causes"
DOMAINS = (DOMAIN, CAUSES_DOMAIN)
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
            _translation.add_fallback(
                gettext.translation(CAUSES_DOMAIN, LOCALE_DIR, languages=[lang], fallback=True)
            )
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


# -- Click's own texts -----------------------------------------------------------------------------------
# Typer >= 0.2x vendors a Click whose help and error texts are plain English strings, not gettext calls:
# the help option's text and the "Usage:" prefix are swapped in by patch_click_texts(), and usage errors
# are reworded by click_error() into the one-line form of every lokin-doctor usage error.

HELP_TEXT = N_("Show this message and exit.")
#: Typer's own gettext texts (typer/core.py), listed so that they are extracted into our catalog.
TYPER_TEXTS = (
    N_("Options"),
    N_("Arguments"),
    N_("Commands"),
    N_("default: {default}"),
    N_("env var: {var}"),
    N_("required"),
    N_("(dynamic)"),
    N_("Aborted!"),
    N_("Missing command."),
    N_("No such command {name!r}."),
)
USAGE_PREFIX = N_("Usage: ")

#: Click's error messages (English, as Click formats them) and our wording, translatable.
CLICK_ERRORS: tuple[tuple[str, str], ...] = (
    (r"No such option: (?P<name>\S+)(?: \(Possible options: (?P<alt>.*)\))?$", N_("no such option: {name}")),
    (r"No such command '(?P<name>.*)'\.(?: Did you mean (?P<alt>.*)\?)?$", N_("no such command: {name}")),
    (r"Missing argument '(?P<name>.*)'\.$", N_("missing argument: {name}")),
    (r"Missing option '(?P<name>.*)'\.$", N_("missing option: {name}")),
    (r"Missing command\.$", N_("missing command")),
    (r"Option '(?P<name>.*)' requires an argument\.$", N_("option {name} needs a value")),
    (r"Option '(?P<name>.*)' does not take a value\.$", N_("option {name} takes no value")),
    (
        r"Got unexpected extra argument(?:s|\(s\))? \((?P<name>.*)\)$",
        N_("unexpected extra argument(s): {name}"),
    ),
    (r"Invalid value for (?P<name>.+?): (?P<detail>.*)$", N_("invalid value for {name}: {detail}")),
)
#: Click's reasons for an invalid value.
CLICK_DETAILS: tuple[tuple[str, str], ...] = (
    (r"'(?P<value>.*)' is not a valid float\.$", N_("{value!r} is not a number; give e.g. 2.5")),
    (r"'(?P<value>.*)' is not a valid int(?:eger)?\.$", N_("{value!r} is not a whole number; give e.g. 10")),
    (r"'(?P<value>.*)' is not a valid boolean\.$", N_("{value!r} is not a yes/no value (true, false)")),
    (r"'(?P<value>.*)' is not one of (?P<choices>.*)\.$", N_("{value!r} is not one of {choices}")),
)
#: Said after a usage error that Click found.
SEE_HELP = N_("{message}; see '{command} --help'")
DID_YOU_MEAN = N_("{message}; did you mean {alt}?")


def click_error(message: str) -> str:
    """A Click usage error's message, in our words and the chosen language (unchanged if unknown)."""
    import re

    for pattern, template in CLICK_ERRORS:
        m = re.match(pattern, message.strip())
        if m is None:
            continue
        fields = m.groupdict()
        if fields.get("name"):
            fields["name"] = fields["name"].replace("'", "")
        detail = fields.get("detail")
        if detail is not None:
            for dpattern, dtemplate in CLICK_DETAILS:
                dm = re.match(dpattern, detail)
                if dm is not None:
                    detail = _(dtemplate).format(**dm.groupdict())
                    break
            fields["detail"] = detail
        text = _(template).format(**{k: v for k, v in fields.items() if k != "alt"})
        if fields.get("alt"):
            text = _(DID_YOU_MEAN).format(message=text, alt=fields["alt"])
        return text
    return message


def patch_click_texts() -> None:
    """Translate the help option's text and the usage prefix of whichever Click typer uses."""
    if language() == "en":
        return
    import importlib

    for name in ("typer._click.decorators", "click.decorators"):
        package = name.partition(".decorators")[0]
        # Click imports its decorators lazily (get_help_option): import them now, from the Click in use.
        module = importlib.import_module(name) if package in sys.modules else None
        original = getattr(module, "help_option", None)
        if module is None or original is None or getattr(original, "_lokin", False):
            continue

        def help_option(*args: object, _original: object = original, **kwargs: object) -> object:
            decorator = _original(*args, **kwargs)  # type: ignore[operator]

            def apply(command: object) -> object:
                result = decorator(command)
                params = getattr(command, "params", None)
                if params:
                    params[-1].help = _(HELP_TEXT)
                return result

            return apply

        help_option._lokin = True  # type: ignore[attr-defined]
        module.help_option = help_option  # type: ignore[attr-defined]
    for name in ("typer._click.formatting", "click.formatting"):
        package = name.partition(".formatting")[0]
        module = importlib.import_module(name) if package in sys.modules else None
        formatter = getattr(module, "HelpFormatter", None)
        if formatter is None or getattr(formatter.write_usage, "_lokin", False):
            continue
        write_usage = formatter.write_usage

        def translated(
            self: object, prog: str, args: str = "", prefix: str | None = None, _w: object = write_usage
        ) -> None:
            _w(self, prog, args, _(USAGE_PREFIX) if prefix is None else prefix)  # type: ignore[operator]

        translated._lokin = True  # type: ignore[attr-defined]
        formatter.write_usage = translated
