"""The documentation: README length and contents, links that resolve, a runbook entry per alert.

Each check is a function of the repository root that returns its problems, one line each, so
the same function is run on the repository (expecting none) and on a broken copy in a
temporary directory (expecting each planted problem to be found).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
README_MAX_LINES = 300
ROOT_DOCS = ("README.md", "CONTRIBUTING.md", "SECURITY.md", "CHANGELOG.md")
RULES_TEMPLATE = Path("helm/product-proxy/templates/prometheusrule.yaml")
HELPERS_TEMPLATE = Path("helm/product-proxy/templates/_helpers.tpl")
CHART_VALUES = Path("helm/product-proxy/values.yaml")
RUNBOOK = Path("docs/runbook.md")
RUNBOOK_HELPER = "product-proxy.runbookUrl"

FENCE = re.compile(r"^\s{0,3}(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
# [text](target "title") and ![alt](target); the text may hold one level of brackets.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
INLINE_CODE = re.compile(r"(`+).+?\1")
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
ALERT = re.compile(r"^\s*- alert:\s*(\S+)\s*$", re.MULTILINE)
VERSION = re.compile(r"^__version__\s*=\s*\"([^\"]+)\"", re.MULTILINE)
TOC_TITLES = ("contents", "table of contents")


# Reading Markdown --------------------------------------------------------------------------


def prose(text: str) -> list[str]:
    """The lines of ``text`` outside fenced code blocks (``` or ~~~)."""
    lines: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is None:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts as its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(text: str) -> list[tuple[int, str]]:
    """Each heading of ``text`` as (level, text), in order, code blocks left out."""
    found = []
    for line in prose(text):
        match = HEADING.match(line)
        if match:
            found.append((len(match.group(1)), match.group(2)))
    return found


def anchors(text: str) -> set[str]:
    """Every anchor a link into ``text`` may name, numbered as GitHub numbers repeats."""
    seen: dict[str, int] = {}
    result = set(HTML_ANCHOR.findall(text))
    for _level, title in headings(text):
        base = slug(title)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def link_targets(lines: list[str]) -> list[str]:
    """The targets of the inline links and reference definitions in ``lines``."""
    without_code = [INLINE_CODE.sub("", line) for line in lines]
    # Joined, so that a link whose text wraps onto the next line is still one link.
    targets = INLINE_LINK.findall("\n".join(without_code))
    for line in without_code:
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            targets.append(definition.group(1))
    return targets


def documents(root: Path) -> list[Path]:
    """The Markdown files whose links are checked: the root documents and ``docs/*.md``."""
    found = [root / name for name in ROOT_DOCS if (root / name).is_file()]
    return found + sorted((root / "docs").glob("*.md"))


def within(document: Path, target: str, root: Path) -> bool:
    """Whether the relative link ``target`` in ``document`` stays inside ``root``."""
    path = target.partition("#")[0]
    return (document.parent / path).resolve().is_relative_to(root.resolve())


def resolve(document: Path, target: str, root: Path) -> str | None:
    """Say what is wrong with the relative link ``target`` in ``document``, or None."""
    path, _, anchor = target.partition("#")
    if not within(document, target, root):
        return "points outside the repository"
    destination = (document.parent / path).resolve() if path else document.resolve()
    if not destination.exists():
        return "names no file"
    if (
        anchor
        and destination.suffix == ".md"
        and anchor not in anchors(destination.read_text(encoding="utf-8"))
    ):
        return f"names no heading of {destination.relative_to(root.resolve())}"
    return None


# The checks --------------------------------------------------------------------------------


def readme_problems(root: Path) -> list[str]:
    """README within its length, its contents first, every contents link to a real section."""
    text = (root / "README.md").read_text(encoding="utf-8")
    problems = []
    if (count := len(text.splitlines())) > README_MAX_LINES:
        problems.append(f"README.md has {count} lines; at most {README_MAX_LINES}")
    sections = [title for level, title in headings(text) if level == 2]
    if not sections or sections[0].lower() not in TOC_TITLES:
        return [*problems, "README.md: the first section is not the table of contents"]
    lines = prose(text)
    start = next(i for i, line in enumerate(lines) if line.startswith("## ")) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("#")), len(lines))
    listed = link_targets(lines[start:end])
    present = anchors(text)
    problems += [
        f"README.md contents: {target} names no heading"
        for target in listed
        if not target.startswith("#") or target[1:] not in present
    ]
    problems += [
        f"README.md contents: section {title!r} is not listed"
        for title in sections[1:]
        if f"#{slug(title)}" not in listed
    ]
    return problems


def link_problems(root: Path) -> list[str]:
    """Every relative link of the checked documents names a file of the repository (and anchor)."""
    problems = []
    for document in documents(root):
        lines = prose(document.read_text(encoding="utf-8"))
        for target in link_targets(lines):
            if URL_SCHEME.match(target):
                continue
            problem = resolve(document, target, root) if target else "is empty"
            if problem:
                problems.append(f"{document.relative_to(root)}: link {target!r} {problem}")
    return problems


def outside_reference_problems(root: Path) -> list[str]:
    """No document names SPEC.md, or ``../`` except in a link that stays in the repository."""
    problems = []
    for document in documents(root):
        text = document.read_text(encoding="utf-8")
        name = document.relative_to(root)
        if "spec.md" in text.lower():
            problems.append(f"{name}: refers to SPEC.md, which is not in the repository")
        inside = {
            target
            for target in link_targets(text.splitlines())
            if "../" in target and within(document, target, root)
        }
        for target in inside:
            text = text.replace(f"({target})", "()")
        if "../" in text:
            problems.append(f"{name}: refers to ../ (outside the repository)")
    return problems


def alert_names(root: Path) -> list[str]:
    """The alerts of the chart's PrometheusRule template, in order."""
    return ALERT.findall((root / RULES_TEMPLATE).read_text(encoding="utf-8"))


def runbook_problems(root: Path) -> list[str]:
    """A ``## <AlertName>`` section of the runbook for every alert."""
    text = (root / RUNBOOK).read_text(encoding="utf-8")
    sections = {title for level, title in headings(text) if level == 2}
    return [
        f"{RUNBOOK}: no '## {alert}' section (anchor #{alert.lower()})"
        for alert in alert_names(root)
        if alert not in sections or slug(alert) != alert.lower()
    ]


def runbook_url_problems(root: Path) -> list[str]:
    """Every alert carries a ``runbook_url`` annotation ending in ``#<alert in lower case>``."""
    template = (root / RULES_TEMPLATE).read_text(encoding="utf-8")
    helpers = (root / HELPERS_TEMPLATE).read_text(encoding="utf-8")
    _, defined, helper = helpers.partition(f'define "{RUNBOOK_HELPER}"')
    helper = helper.split("define ", 1)[0]
    helper_ok = defined and all(
        word in helper for word in ("runbook_url:", "runbookBaseUrl", "lower")
    )
    starts = [match.start() for match in ALERT.finditer(template)]
    problems = []
    for alert, start, end in zip(
        alert_names(root), starts, [*starts[1:], len(template)], strict=True
    ):
        block = template[start:end]
        literal = "runbook_url:" in block and f"#{alert.lower()}" in block
        included = re.search(
            rf"include \"{re.escape(RUNBOOK_HELPER)}\".*\"alert\" \"{alert}\"", block
        )
        if not (literal or (included and helper_ok)):
            problems.append(f"{RULES_TEMPLATE}: {alert} has no runbook_url ...#{alert.lower()}")
    values = yaml.safe_load((root / CHART_VALUES).read_text(encoding="utf-8"))
    rule_values = values.get("prometheusRule", {})
    if "runbookBaseUrl" not in rule_values:
        problems.append(f"{CHART_VALUES}: no prometheusRule.runbookBaseUrl")
    elif (base := rule_values["runbookBaseUrl"]) and not str(base).endswith(str(RUNBOOK)):
        problems.append(f"{CHART_VALUES}: runbookBaseUrl {base!r} is not the runbook")
    return problems


# The repository ----------------------------------------------------------------------------


def test_slugs_follow_github() -> None:
    assert slug("Quick start") == "quick-start"
    assert slug("Metrics (`GET /metrics`)") == "metrics-get-metrics"
    assert slug("Service settings (`PROXY_*`)") == "service-settings-proxy_"
    assert slug("Pointing it at your 1NCE account") == "pointing-it-at-your-1nce-account"
    assert slug("Caching, replicas and reliability") == "caching-replicas-and-reliability"
    assert slug("[Unreleased]") == "unreleased"
    assert slug("[0.1.0] - 2026-11-29") == "010---2026-11-29"
    assert anchors("# A\n## Added\n## Added\n```\n## Code\n```\n") == {"a", "added", "added-1"}


def test_the_project_documents_exist() -> None:
    for name in (*ROOT_DOCS, "LICENSE", str(RUNBOOK)):
        assert (REPO / name).is_file(), name
    licence = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License\n")
    assert "Copyright (c) 2026 The 1NCE Product Proxy authors" in licence


def test_the_changelog_has_the_current_version() -> None:
    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    version = VERSION.search((REPO / "proxy" / "__init__.py").read_text(encoding="utf-8"))
    assert version is not None
    sections = [title for level, title in headings(text) if level == 2]
    assert sections[0] == "[Unreleased]", sections
    assert any(title.startswith(f"[{version.group(1)}] - ") for title in sections), sections
    for title in sections[1:]:
        assert re.fullmatch(r"\[\d+\.\d+\.\d+\] - \d{4}-\d{2}-\d{2}", title), title


def test_readme_is_short_and_its_contents_resolve() -> None:
    assert readme_problems(REPO) == []


def test_relative_links_resolve() -> None:
    assert link_problems(REPO) == []


def test_nothing_refers_outside_the_repository() -> None:
    assert outside_reference_problems(REPO) == []


def test_the_runbook_has_a_section_per_alert() -> None:
    assert len(alert_names(REPO)) >= 4
    assert runbook_problems(REPO) == []


def test_every_alert_links_to_its_runbook_section() -> None:
    assert runbook_url_problems(REPO) == []


# The checks find what they look for ----------------------------------------------------------


def test_the_real_readme_broken_is_found(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    text = (REPO / "README.md").read_text(encoding="utf-8")
    shutil.copy(REPO / "README.md", root / "README.md")
    assert readme_problems(root) == []
    first = next(title for level, title in headings(text) if level == 2 and title != "Contents")
    (root / "README.md").write_text(text.replace(f"## {first}\n", f"## {first} renamed\n"))
    assert readme_problems(root) == [
        f"README.md contents: #{slug(first)} names no heading",
        f"README.md contents: section '{first} renamed' is not listed",
    ]
    (root / "README.md").write_text(text + "\n" * README_MAX_LINES)
    assert len(readme_problems(root)) == 1


def test_a_long_readme_and_a_wrong_contents_are_found(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    toc = "- [Quick start](#quick-start)\n- [Gone](#gone)\n"
    body = "## Quick start\n\ntext\n\n## Unlisted\n\n" + "line\n" * README_MAX_LINES
    (root / "README.md").write_text(f"# Title\n\nIntro.\n\n## Contents\n\n{toc}\n{body}")
    problems = readme_problems(root)
    assert any("lines; at most 300" in problem for problem in problems), problems
    assert "README.md contents: #gone names no heading" in problems
    assert "README.md contents: section 'Unlisted' is not listed" in problems
    (root / "README.md").write_text("# Title\n\n## Quick start\n\n- [Quick start](#quick-start)\n")
    assert readme_problems(root) == ["README.md: the first section is not the table of contents"]


def test_broken_links_and_outside_references_are_found(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.md").write_text("# A\n\n## Real section\n\nSee [b](b.md).\n")
    (root / "README.md").write_text(
        "# T\n\n"
        "[fine](docs/a.md#real-section) [missing](docs/missing.md) [anchor](docs/a.md#nope)\n"
        "[self](#nowhere) [web](https://example.com/x) `[code](not/checked.md)`\n"
        "[outside](../outside.md) and the contract in ../shared/SPEC.md.\n\n"
        "```\n[fenced](not/checked/either.md)\n```\n"
    )
    (root / "CONTRIBUTING.md").write_text("# C\n\n[in the repository](docs/../docs/a.md)\n")
    (root / "docs" / "up.md").write_text("# Up\n\n[readme](../README.md#t) is fine.\n")
    problems = link_problems(root)
    assert problems == [
        "README.md: link 'docs/missing.md' names no file",
        "README.md: link 'docs/a.md#nope' names no heading of docs/a.md",
        "README.md: link '#nowhere' names no heading of README.md",
        "README.md: link '../outside.md' points outside the repository",
        "docs/a.md: link 'b.md' names no file",
    ]
    assert outside_reference_problems(root) == [
        "README.md: refers to SPEC.md, which is not in the repository",
        "README.md: refers to ../ (outside the repository)",
    ]


def test_a_missing_runbook_section_or_runbook_url_is_found(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / RULES_TEMPLATE).parent.mkdir(parents=True)
    (root / RUNBOOK).parent.mkdir(parents=True)
    (root / RULES_TEMPLATE).write_text(
        "rules:\n"
        "  - alert: FirstAlert\n"
        "    annotations:\n"
        '      {{- include "product-proxy.runbookUrl" (dict "ctx" $ "alert" "FirstAlert") }}\n'
        "  - alert: SecondAlert\n"
        "    annotations:\n"
        "      summary: no link\n"
        "  - alert: ThirdAlert\n"
        "    annotations:\n"
        "      runbook_url: https://example.com/runbook.md#thirdalert\n"
    )
    (root / HELPERS_TEMPLATE).write_text(
        '{{- define "product-proxy.runbookUrl" -}}\n'
        "{{- with .ctx.Values.prometheusRule.runbookBaseUrl -}}\n"
        'runbook_url: {{ printf "%s#%s" . (lower $.alert) | quote }}\n'
        "{{- end -}}\n{{- end -}}\n"
    )
    (root / CHART_VALUES).write_text(
        "prometheusRule:\n  runbookBaseUrl: https://x/docs/runbook.md\n"
    )
    (root / RUNBOOK).write_text("# Runbook\n\n## FirstAlert\n\n## Third alert\n")
    assert runbook_problems(root) == [
        f"{RUNBOOK}: no '## SecondAlert' section (anchor #secondalert)",
        f"{RUNBOOK}: no '## ThirdAlert' section (anchor #thirdalert)",
    ]
    assert runbook_url_problems(root) == [
        f"{RULES_TEMPLATE}: SecondAlert has no runbook_url ...#secondalert"
    ]
    (root / HELPERS_TEMPLATE).write_text('{{- define "product-proxy.runbookUrl" -}}{{- end -}}\n')
    (root / CHART_VALUES).write_text("prometheusRule:\n  runbookBaseUrl: https://x/README.md\n")
    assert runbook_url_problems(root) == [
        f"{RULES_TEMPLATE}: FirstAlert has no runbook_url ...#firstalert",
        f"{RULES_TEMPLATE}: SecondAlert has no runbook_url ...#secondalert",
        f"{CHART_VALUES}: runbookBaseUrl 'https://x/README.md' is not the runbook",
    ]
