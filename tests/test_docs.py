"""Comments and docs stand on their own: no citation of specification sections that are not in the
repository, and every `docs/...` page the code or the docs name exists.

A reader of this repository cannot open "avggt.md §8.2", "Q3 fix" or "D5.4"; a comment gives the
reason itself, a paper, an upstream file and function, or a page under `docs/`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_DIR = Path(__file__).resolve().parents[1]

SUFFIXES = {".py", ".yaml", ".yml", ".md", ".sh", ".toml", ".cfg", ".txt"}
NAMES = {"Makefile", "run"}
SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "runs", "wandb"}
"""Folders never scanned: tooling, caches, and `results/runs/` (this machine's own runs)."""

SPEC_CITATIONS = [
    ("spec file", re.compile(r"\b(?:avggt|vggt|pi3|baselines|datasets_and_metrics|design)\.md\b")),
    ("shared specs", re.compile(r"shared/specs|\.\./shared\b")),
    ("section sign", re.compile("§")),
    ("quirk id", re.compile(r"\bQ[1-9][0-9]?\b")),
    # lettered spec sections (A2, C6.3, D5.4, ...); one or two digits, so GPU names (A100) and
    # lint codes (E501, B019) do not match
    ("section code", re.compile(r"\b[A-F][0-9]{1,2}(?:\.[0-9]+)*\b(?![-/])")),
    ("spec test id", re.compile(r"\b(?:AV|FM)-[0-9]+\b")),
    ("the spec", re.compile(r"\b(?:the|per|our) spec\b|\bspec(?:'s| says)\b", re.IGNORECASE)),
]
LINT_CODE = re.compile(r"#\s*(?:noqa|type:\s*ignore|fmt:)")
DOCS_PATH = re.compile(r"(?<![\w./-])docs/[\w./-]*\w")


def text_files() -> list[Path]:
    """Every source, config, README and docs file of the repository but this test (whose
    examples must cite specs)."""
    out = []
    for path in sorted(REPO_DIR.rglob("*")):
        rel = path.relative_to(REPO_DIR)
        if any(part in SKIP_DIRS for part in rel.parts[:-1]) or not path.is_file():
            continue
        if path == Path(__file__).resolve():
            continue
        if path.suffix in SUFFIXES or path.name in NAMES:
            out.append(path)
    return out


def spec_citations(text: str) -> list[tuple[int, str, str]]:
    """(line number, kind, matched text) of every spec citation in `text`."""
    hits = []
    for number, line in enumerate(text.splitlines(), 1):
        scan = LINT_CODE.split(line, maxsplit=1)[0]  # lint directives name rule codes
        for kind, pattern in SPEC_CITATIONS:
            hits.extend((number, kind, m.group(0)) for m in pattern.finditer(scan))
    return hits


def docs_paths(text: str) -> set[str]:
    """The `docs/...` paths `text` names, without a trailing anchor."""
    return {m.group(0).split("#")[0].rstrip(".") for m in DOCS_PATH.finditer(text)}


@pytest.mark.parametrize(
    "line",
    [
        '"""SGA with mean-fill (avggt.md §5-§7)."""',
        "# Q3 fix: protected tokens appear once",
        "aligned_grid: false  # Q2 fix",
        "follow the A2 resize rule",
        "(datasets_and_metrics.md D4, D5)",
        "D5.5 steps 3-6 on already aligned clouds",
        "(Umeyama 1991; spec D3 formulas)",
        "# --- AV-4: fast path equals the float64 reference",
        "defaults are the spec's readings",
        "see ../shared/specs/vggt.md",
    ],
)
def test_the_patterns_catch_spec_citations(line):
    assert spec_citations(line), line


@pytest.mark.parametrize(
    "line",
    [
        "A100 80GB, FlashAttention-2",
        "x = 1  # noqa: E501",
        "@cache  # noqa: B019",
        "route spec: `sga(sigma=9)`",
        "RouteSpec(spec.name, params)",
        "Q·R rotations, E_i·inv(E_j), A_4, A_11, A_17, A_23",
        "AVGGT(9) at 800 frames, bf16 on an H100",
        "see docs/conventions.md, section 'Pair orders'",
        "timespec='seconds'",
    ],
)
def test_the_patterns_leave_ordinary_text_alone(line):
    assert not spec_citations(line), line


def test_no_file_cites_a_spec_section():
    files = text_files()
    assert any(p.name == "conventions.md" for p in files)  # the scan reaches docs/
    assert any(p.suffix == ".yaml" for p in files) and any(p.suffix == ".py" for p in files)
    found = [
        f"{path.relative_to(REPO_DIR)}:{number}: {kind} {text!r}"
        for path in files
        for number, kind, text in spec_citations(path.read_text(errors="replace"))
    ]
    assert not found, "cite a paper, an upstream file or docs/ instead:\n" + "\n".join(found)


def test_docs_pages_named_in_the_repository_exist():
    named: dict[str, list[str]] = {}
    for path in text_files():
        for doc in docs_paths(path.read_text(errors="replace")):
            named.setdefault(doc, []).append(str(path.relative_to(REPO_DIR)))
    assert "docs/conventions.md" in named  # the code points to it
    missing = {doc: where for doc, where in named.items() if not (REPO_DIR / doc).exists()}
    assert not missing, f"named but absent: {missing}"


def test_docs_path_extraction():
    text = "see docs/conventions.md#cameras, or [x](docs/a/b.md). Not mydocs/x.md nor a/docs/y."
    assert docs_paths(text) == {"docs/conventions.md", "docs/a/b.md"}


def test_relative_links_of_the_docs_resolve():
    broken = []
    for page in sorted((REPO_DIR / "docs").glob("*.md")):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.name}: {target}")
    assert not broken, broken


def test_a_source_file_over_400_lines_says_why_in_its_docstring():
    """The house rule: no module over ~400 lines without a sentence in its docstring that says
    why it stays one file (by convention it names its size: "about N lines")."""
    import ast

    from avggt_bench.paths import REPO_DIR

    long_without_reason = []
    for path in sorted((REPO_DIR / "avggt_bench").rglob("*.py")):
        text = path.read_text()
        if text.count("\n") <= 400:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if not re.search(r"about \d+ lines", doc):
            long_without_reason.append(f"{path.relative_to(REPO_DIR)} ({text.count(chr(10))})")
    assert not long_without_reason, f"split these or say why they stay whole: {long_without_reason}"
