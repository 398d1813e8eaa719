"""Problems as output: text for people, JSON for tools, GitHub Actions annotations for CI."""
from __future__ import annotations

import json

from engine.config._problem import Problem

FORMATS = ("text", "json", "github")


def format_problems(problems: list[Problem], files: int, fmt: str = "text", max_shown: int = 50) -> str:
    """The report for `files` checked files; `max_shown` limits the text list (0: all)."""
    return _FORMATTERS[fmt](problems, files, max_shown)


def summary(problems: list[Problem], files: int) -> str:
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    bad = len({p.file for p in problems if p.severity == "error"})
    noun = "file" if files == 1 else "files"
    if not errors:
        extra = f" ({_count(warnings, 'warning')})" if warnings else ""
        return f"{files} {noun} valid{extra}"
    extra = f" and {_count(warnings, 'warning')}" if warnings else ""
    return f"{_count(errors, 'error')}{extra} in {bad} of {files} {noun}"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _text(problems: list[Problem], files: int, max_shown: int) -> str:
    shown = problems if max_shown <= 0 else problems[:max_shown]
    lines = [str(p) for p in shown]
    hidden = problems[len(shown):]
    if hidden:
        errors = sum(p.severity == "error" for p in hidden)
        what = _count(errors, "more error") if errors == len(hidden) else \
            f"{_count(len(hidden), 'more problem')} ({_count(errors, 'error')})"
        lines.append(f"... and {what}; use --max-errors 0 to see all")
    lines.append(summary(problems, files))
    return "\n".join(lines)


def _json(problems: list[Problem], files: int, max_shown: int) -> str:
    errors = sum(p.severity == "error" for p in problems)
    return json.dumps({"valid": errors == 0, "files": files, "errors": errors,
                       "warnings": len(problems) - errors,
                       "problems": [p.as_dict() for p in problems]}, indent=2, ensure_ascii=False)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _github(problems: list[Problem], files: int, max_shown: int) -> str:
    lines = [f"::{p.severity} file={_escape_property(p.file)},line={p.line},col={p.col}::"
             f"{_escape_data(p.json_path + ': ' + p.message)}" for p in problems]
    lines.append(summary(problems, files))
    return "\n".join(lines)


_FORMATTERS = {"text": _text, "json": _json, "github": _github}
