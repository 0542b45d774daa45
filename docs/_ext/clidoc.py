"""``.. aep-cli:: [COMMAND ...]``: a command's reference, read from the parser.

The usage line, the subcommands, every option with its metavar and help, and the
epilog (examples, exit codes, environment) are those ``aep-extract COMMAND --help``
prints, so the page cannot drift from the code. The directive's content may add
notes to options, as a definition list whose terms are option strings
(``--start``); a note on an option the command lacks fails the build.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

from aep_extract.cli import build_parser

if TYPE_CHECKING:
    from sphinx.application import Sphinx

WIDTH = 80
"""Columns of the usage and epilog blocks: a terminal's, and what furo's content
column shows without scrolling."""

_Row = tuple[str, str, list[nodes.Node]]
"""A term shown as code, its text (a help text) and the nodes that follow it."""

_LITERAL = re.compile(r"((?<![\w-])--?[a-z][\w-]*|\bAEP_[A-Z_]+\b)")
"""Option names and variables in a help text, shown as code."""


def _subcommands(
    parser: argparse.ArgumentParser,
) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """A parser's commands: their parsers and the help its usage lists them with."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return {name: (sub, helps[name]) for name, sub in action.choices.items()}
    return {}


def _formatter(parser: argparse.ArgumentParser) -> argparse.HelpFormatter:
    return parser.formatter_class(prog=parser.prog, width=WIDTH)  # type: ignore[call-arg]


def _sentence(text: str) -> str:
    """A help text (a fragment in lower case) as a sentence."""
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def _code(text: str) -> nodes.literal_block:
    block = nodes.literal_block(text, text)
    block["language"] = "text"
    return block


class CliReference(SphinxDirective):
    optional_arguments = 2
    has_content = True

    def run(self) -> list[nodes.Node]:
        parser = build_parser()
        for word in self.arguments:
            commands = _subcommands(parser)
            if word not in commands:
                raise self.error(
                    f"aep-extract has no command {' '.join(self.arguments)}"
                )
            parser = commands[word][0]
        notes = self._notes()
        formatter = _formatter(parser)
        formatter.add_usage(
            parser.usage, parser._actions, parser._mutually_exclusive_groups
        )
        result: list[nodes.Node] = [_code(formatter.format_help().strip())]
        commands = _subcommands(parser)
        if commands:
            rows: list[_Row] = [
                (f"{parser.prog} {name}", h, []) for name, (_, h) in commands.items()
            ]
            result += [nodes.rubric("", "Commands"), self._list(rows)]
        options: list[_Row] = []
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            shown = formatter._format_action_invocation(action)
            text = formatter._expand_help(action) if action.help else ""
            extra = [notes.pop(s) for s in action.option_strings if s in notes]
            options.append((shown, text, [n for note in extra for n in note]))
        if notes:
            raise self.error(f"{parser.prog} has no option {', '.join(notes)}")
        if options:
            result += [nodes.rubric("", "Options"), self._list(options)]
        if parser.epilog:
            result.append(_code(parser.epilog))
        return result

    def _notes(self) -> dict[str, list[nodes.Node]]:
        """The content's notes, by option string."""
        if not self.content:
            return {}
        box = nodes.container()
        self.state.nested_parse(self.content, self.content_offset, box)
        lists = box.children
        if len(lists) != 1 or not isinstance(lists[0], nodes.definition_list):
            raise self.error("the content must be one definition list of options")
        return {item[0].astext(): list(item[-1].children) for item in lists[0].children}

    @staticmethod
    def _list(rows: list[_Row]) -> nodes.definition_list:
        """Terms shown as code, each with a text and nodes after it."""
        items = nodes.definition_list()
        for term, text, extra in rows:
            text = _sentence(text) if text else text
            paragraph = nodes.paragraph()
            for i, piece in enumerate(_LITERAL.split(text)):
                paragraph += nodes.literal(piece, piece) if i % 2 else nodes.Text(piece)
            items += nodes.definition_list_item(
                "",
                nodes.term("", "", nodes.literal(term, term)),
                nodes.definition("", paragraph, *extra),
            )
        return items


def setup(app: Sphinx) -> dict[str, bool]:
    app.add_directive("aep-cli", CliReference)
    return {"parallel_read_safe": True}
