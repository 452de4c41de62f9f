"""Build-time helpers for the documentation site (mkdocs.yml); not part of the package.

They let the pages and the docstrings stay as GitHub, ``help()`` and the tests read them:

- `on_page_markdown` (an mkdocs hook): a fence ```` ```python no-run ```` (a block that
  tests/test_docs.py compiles but does not run) is rendered as ```` ```python ````;
  Markdown's fenced-code syntax has no room for the second word.
- `GoogleDocstrings` (a griffe extension), on every docstring griffe reads:
  an ``Args:`` entry that documents several parameters at once (``strides, dilation:
  an int or ...``) becomes one entry per parameter with the shared description, as
  Sphinx's Napoleon reads it, so that each name is checked against the signature and
  shown with its annotation; an ``Example:`` section is read as ``Examples:`` (one
  section to Napoleon; to griffe the singular is an admonition, whose ``>>>`` lines
  would be taken for Markdown); and the ``#:`` comment lines right above a module
  constant or type alias (Sphinx's convention, used by jax_tconv.typing) become that
  attribute's docstring.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_NO_RUN = re.compile(r"^([ ]{0,3}(?:`{3,}|~{3,})[ \t]*)python no-run[ \t]*$", re.MULTILINE)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return _NO_RUN.sub(r"\1python", markdown)


_ARGS = re.compile(r"^(\s*)(?:Args|Arguments|Parameters|Params|Other Parameters):\s*$")
_SHARED = re.compile(r"^(\s*)([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)+)\s*:(.*)$")


def split_shared_args(text: str) -> str:
    """`text` with each ``a, b: description`` entry of an Args section written once per name."""
    lines, out, j = text.splitlines(), [], 0
    while j < len(lines):
        head = _ARGS.match(lines[j])
        out.append(lines[j])
        j += 1
        if not head:
            continue
        section_indent = len(head.group(1))
        while j < len(lines):
            line = lines[j]
            indent = len(line) - len(line.lstrip())
            if line.strip() and indent <= section_indent:
                break                                   # the section has ended
            shared = _SHARED.match(line)
            if not shared:
                out.append(line)
                j += 1
                continue
            body, j = [], j + 1                         # the entry's continuation lines
            while j < len(lines) and (not lines[j].strip() or
                                      len(lines[j]) - len(lines[j].lstrip()) > indent):
                body.append(lines[j])
                j += 1
            while body and not body[-1].strip():       # blank lines after it stay after it
                body.pop()
                j -= 1
            lead, names, first = shared.groups()
            for name in re.split(r"\s*,\s*", names):
                out.extend([f"{lead}{name}:{first}", *body])
    return "\n".join(out)


_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class GoogleDocstrings(griffe.Extension):
    """The docstring adaptations of the module docstring, applied as griffe reads each object."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None and isinstance(obj, griffe.Attribute) and obj.lineno:
            lines, above = obj.lines_collection[obj.filepath], []
            j = obj.lineno - 2
            while j >= 0 and lines[j].lstrip().startswith("#:"):
                above.insert(0, lines[j].lstrip()[2:].strip())
                j -= 1
            if above:
                obj.docstring = griffe.Docstring("\n".join(above), lineno=j + 2, parent=obj)
        if obj.docstring is not None:
            text = split_shared_args(obj.docstring.value)
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", text)
