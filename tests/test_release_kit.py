"""The released-library kit: LICENSE, CHANGELOG.md and the API reference (mkdocs.yml, docs/api/).

Fast, static checks that run with the rest of the suite; the site itself is built with
``mkdocs build --strict`` (CI's newest leg, the ``docs`` extra), which this file does not run:

- LICENSE is the license that pyproject.toml declares;
- CHANGELOG.md has a section for the version that pyproject.toml declares;
- every ``::: name`` of docs/api/*.md names something importable, and the public modules
  of the package (PUBLIC_MODULES, itself checked against the files of jax_tconv/) are
  exactly the modules with a page;
- every page of docs/ and docs/api/ is in mkdocs.yml's nav, and the relative links of
  docs/api/ resolve (tests/test_docs.py checks those of docs/*.md).
"""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

import pytest
from test_docs import anchors, links

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
API = ROOT / "docs" / "api"

# The modules a user imports from: each has a page of docs/api/. A new public module (one
# whose dotted name has no part starting with "_") must be added here and given a page.
PUBLIC_MODULES = {
    "jax_tconv",
    "jax_tconv.checkerboard",
    "jax_tconv.initializers",
    "jax_tconv.interop",
    "jax_tconv.nn",
    "jax_tconv.nn.equinox",
    "jax_tconv.nn.linen",
    "jax_tconv.nn.nnx",
    "jax_tconv.reference",
    "jax_tconv.typing",
}
# Modules without an underscore that are not an API: the command line (python -m jax_tconv).
NOT_AN_API = {"jax_tconv.__main__"}

# What LICENSE says for each SPDX identifier pyproject.toml may declare: its title lines.
LICENSE_TITLES = {
    "Apache-2.0": ["Apache License", "Version 2.0, January 2004"],
    "MIT": ["MIT License"],
    "BSD-3-Clause": ["Redistribution and use in source and binary forms"],
}


def declared_license() -> str:
    """pyproject.toml's license: an SPDX string (PEP 639) or the older ``{text = ...}``."""
    lic = PYPROJECT["license"]
    return lic if isinstance(lic, str) else lic["text"]


def test_license_file_is_the_declared_license():
    spdx = declared_license()
    assert spdx in LICENSE_TITLES, f"pyproject.toml declares {spdx!r}: add it to LICENSE_TITLES"
    text = (ROOT / "LICENSE").read_text()
    head = text[:400]
    for title in LICENSE_TITLES[spdx]:
        assert title in head, f"LICENSE does not start as the {spdx} license: no {title!r}"
    for other, titles in LICENSE_TITLES.items():
        if other != spdx:
            assert not all(t in head for t in titles), f"LICENSE is {other}, not {spdx}"
    assert re.search(r"^\s*Copyright \d{4} \S", text, re.MULTILINE), "LICENSE: no copyright line"
    # A license classifier, where there is one, says the same.
    osi = {"Apache-2.0": "Apache Software License", "MIT": "MIT License",
           "BSD-3-Clause": "BSD License"}
    for c in PYPROJECT.get("classifiers", []):
        if c.startswith("License ::"):
            assert c.endswith(osi[spdx]), (c, spdx)


def project_version() -> str:
    if "version" in PYPROJECT:
        return PYPROJECT["version"]
    assert "version" in PYPROJECT.get("dynamic", []), "pyproject.toml gives no version"
    import jax_tconv
    return jax_tconv.__version__


SECTION = re.compile(r"^## \[?([^\]\s]+)\]?", re.MULTILINE)


def changelog_sections(text: str) -> list[str]:
    """The versions of a changelog's ``## `` headings, in order (``Unreleased`` included):
    ``## 0.1.0``, ``## [0.1.0] - 2026-12-05``."""
    return SECTION.findall(text)


def test_changelog_has_a_section_for_this_version():
    version = project_version()
    sections = changelog_sections((ROOT / "CHANGELOG.md").read_text())
    assert version in sections, (f"CHANGELOG.md has no '## {version}' section "
                                 f"(pyproject.toml's version); it has {sections}")
    released = [s for s in sections if s != "Unreleased"]
    assert released[0] == version, (
        f"the newest released section of CHANGELOG.md is {released[0]}, not {version}")
    assert "Unreleased" not in sections[1:], "'## Unreleased' comes first, above the releases"


def test_changelog_sections_are_read():
    text = "# Changelog\n## Unreleased\n### Added\n## [0.2.0] - 2027-01-02\n## 0.1.0\n"
    assert changelog_sections(text) == ["Unreleased", "0.2.0", "0.1.0"]


def test_the_package_version_is_pyprojects():
    import jax_tconv
    assert jax_tconv.__version__ == project_version()


# --- the API reference -----------------------------------------------------------------------

DIRECTIVE = re.compile(r"^:::\s+([\w.]+)\s*$", re.MULTILINE)


def documented() -> dict[str, str]:
    """``{name: page}`` for every ``::: name`` of docs/api/*.md."""
    found = {}
    for page in sorted(API.glob("*.md")):
        for name in DIRECTIVE.findall(page.read_text()):
            assert name not in found, f"{name} has two pages: {found[name]} and {page.name}"
            found[name] = page.name
    return found


def package_modules() -> set[str]:
    """The dotted names of jax_tconv's modules without a private part, from its files."""
    names = set()
    for path in (ROOT / "jax_tconv").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        if name in NOT_AN_API or any(p.startswith("_") for p in parts):
            continue
        names.add(name)
    return names


def resolve(name: str):
    """Import `name` (a module, or an object inside one) as mkdocstrings names it."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is not None and not (e.name == module_name or
                                           module_name.startswith(e.name + ".")):
                raise                       # the module exists; a dependency of it is missing
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(name)


def test_public_modules_are_the_package_modules():
    assert package_modules() == PUBLIC_MODULES, (
        "the public modules of jax_tconv/ changed: update PUBLIC_MODULES and docs/api/ "
        f"(files: {sorted(package_modules())})")


def test_every_public_module_has_a_page():
    pages = documented()
    assert PUBLIC_MODULES <= set(pages), f"no page: {sorted(PUBLIC_MODULES - set(pages))}"
    private = [n for n in pages if any(p.startswith("_") for p in n.split("."))]
    assert not private, f"docs/api/ documents private names: {private}"


@pytest.mark.parametrize("name", sorted(documented()))
def test_every_documented_name_imports(name):
    try:
        obj = resolve(name)
    except ModuleNotFoundError as e:
        if e.name and not e.name.startswith("jax_tconv"):
            pytest.skip(f"{name} needs {e.name}, an optional dependency not installed here")
        raise
    assert obj is not None


def nav_pages() -> set[str]:
    """The .md files mkdocs.yml's nav lists (``- page.md`` or ``- Title: page.md``)."""
    text = (ROOT / "mkdocs.yml").read_text()
    nav = re.search(r"^nav:\n((?:[ \t]+.*\n|\n)*)", text, re.MULTILINE)
    assert nav, "mkdocs.yml has no nav"
    return set(re.findall(r"^\s*-\s+(?:[^:\n]*:\s+)?(\S+\.md)\s*$", nav.group(1), re.MULTILINE))


def test_every_page_is_in_the_nav():
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    listed = nav_pages()
    assert pages == listed, (f"in docs/ but not in mkdocs.yml's nav: {sorted(pages - listed)}; "
                             f"in the nav but not in docs/: {sorted(listed - pages)}")


def test_api_pages_links_resolve():
    problems = []
    for page in sorted(API.glob("*.md")):
        for number, target in links(page):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists():
                problems.append(f"{page.name}:{number}: {target}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{page.name}:{number}: {target}: no such heading")
    assert not problems, "\n".join(problems)
