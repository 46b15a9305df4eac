"""MkDocs hooks of the documentation site (``mkdocs.yml``: ``hooks``).

* ``<!-- cli-reference -->`` in a page is replaced by the command-line reference, generated from
  the ``rtrl-validate`` argparse parser (:func:`rtrl_validation.reports.cli.build_parser`), so the
  page cannot drift from the command;
* ``architecture.md``, when the docs folder has it, is added to the navigation after the concepts.
"""
from __future__ import annotations

import argparse
from pathlib import Path

MARKER = "<!-- cli-reference -->"


def _escape(text: str) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def _options(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | meaning | default |", "| --- | --- | --- |"]
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        names = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.metavar or action.dest}`"
        if action.option_strings and action.nargs != 0:
            names += f" `{action.metavar or action.dest.upper()}`"
        default = action.default
        shown = "" if default in (None, False, argparse.SUPPRESS) or action.nargs == 0 else f"`{default}`"
        rows.append(f"| {names} | {_escape(action.help)} | {_escape(shown)} |")
    return rows


def cli_reference() -> str:
    """The reference of every ``rtrl-validate`` command as Markdown."""
    from rtrl_validation.reports.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    lines = [f"```text\n{parser.format_usage().strip()}\n```", "", parser.description or "", ""]
    for name, command in sub.choices.items():
        lines += [f"## `{parser.prog} {name}`", "", _escape(helps.get(name, "")), "",
                  f"```text\n{command.format_usage().strip()}\n```", ""] + _options(command) + [""]
    return "\n".join(lines)


def on_page_markdown(markdown, page, config, files):
    if MARKER in markdown:
        return markdown.replace(MARKER, cli_reference())
    return markdown


def on_config(config):
    docs = Path(config["docs_dir"])
    nav = config.get("nav")
    if nav is not None and (docs / "architecture.md").is_file() \
            and not any(isinstance(e, dict) and "Architecture" in e for e in nav):
        at = next((i + 1 for i, e in enumerate(nav) if isinstance(e, dict) and "Concepts" in e), len(nav))
        nav.insert(at, {"Architecture": "architecture.md"})
    return config
