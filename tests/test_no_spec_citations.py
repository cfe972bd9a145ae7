"""No file of the repository may cite ``SPEC.md``, a notes file that lives outside the repository.

Docstrings and comments cite the paper (sections, equations, tables) and the book's appendix
``book/conventions.md`` ("the book's appendix, Conventions: ..."), which a clone contains.

Scanned: ``twist_lib/**/*.py``; the text files of ``configs/``, ``data_scripts/``, ``bench/`` and
``tools/``; ``README.md``, ``book/**/*.md`` and the cell sources of ``book/**/*.ipynb`` (outputs are not scanned: base64
images may contain any letters). A citation is the string ``SPEC.md`` anywhere, or the word
``SPEC`` (``\\bSPEC\\b``, case-sensitive). In Python files the word is only looked for in comments
and string literals, so a variable named ``SPEC`` (``bench/bench_evaluation.py`` holds a
``ClassSpec`` in one) is not a citation.
"""
from __future__ import annotations

import io
import json
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SPEC_FILE = re.compile(r"SPEC\.md")
SPEC_WORD = re.compile(r"\bSPEC\b")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".txt", ".sh", ".cfg", ".toml", ".json"}
SKIP_DIRS = {"_build", ".ipynb_checkpoints", "__pycache__"}

# Notebooks left out of the scan because other engineers own them; none of them holds a SPEC
# citation today, so the set is empty. Add a path here (relative to the repository root, with a
# comment naming who edits it) only while such a notebook cannot be fixed.
EXCLUDED: set[str] = set()


def _files(folder: str, suffixes) -> list[Path]:
    root = ROOT / folder
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in suffixes
                  and not SKIP_DIRS.intersection(p.relative_to(ROOT).parts)
                  and p.relative_to(ROOT).as_posix() not in EXCLUDED)


def _python_text_spans(source: str):
    """``(line, text)`` of every comment and string literal of Python source; ``None`` when the
    source does not tokenize (then the caller scans every line)."""
    kinds = {tokenize.COMMENT, tokenize.STRING}
    if hasattr(tokenize, "FSTRING_MIDDLE"):  # Python >= 3.12 splits f-strings into parts
        kinds.add(tokenize.FSTRING_MIDDLE)
    spans = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in kinds:
                for k, line in enumerate(tok.string.split("\n")):
                    spans.append((tok.start[0] + k, line))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    return spans


def _hits_in_text(text: str, python: bool) -> list[tuple[int, str]]:
    """``(line number, line)`` of every citation in ``text`` (1-based lines)."""
    lines = text.split("\n")
    hits = {n: line for n, line in enumerate(lines, 1) if SPEC_FILE.search(line)}
    spans = _python_text_spans(text) if python else None
    if spans is None:
        spans = list(enumerate(lines, 1))
    for n, part in spans:
        if SPEC_WORD.search(part):
            hits[n] = lines[n - 1] if n - 1 < len(lines) else part
    return sorted(hits.items())


def _hits_in_notebook(path: Path) -> list[tuple[str, str]]:
    """``(where, line)`` of every citation in a notebook's cell sources."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for c, cell in enumerate(nb.get("cells", [])):
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        python = cell.get("cell_type") == "code"
        for n, line in _hits_in_text(source, python):
            out.append((f"cell {c} ({cell.get('cell_type')}), line {n}", line))
    return out


def _all_hits() -> list[str]:
    report = []
    for path in _files("twist_lib", {".py"}):
        report += [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
                   for n, line in _hits_in_text(path.read_text(encoding="utf-8"), True)]
    for folder in ("configs", "data_scripts", "bench", "tools"):
        for path in _files(folder, TEXT_SUFFIXES):
            text = path.read_text(encoding="utf-8", errors="replace")
            report += [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
                       for n, line in _hits_in_text(text, path.suffix == ".py")]
    for path in [ROOT / "README.md", *_files("book", {".md"})]:
        report += [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
                   for n, line in _hits_in_text(path.read_text(encoding="utf-8"), False)]
    for path in _files("book", {".ipynb"}):
        report += [f"{path.relative_to(ROOT)}: {where}: {line.strip()}"
                   for where, line in _hits_in_notebook(path)]
    return report


def test_no_file_cites_spec():
    hits = _all_hits()
    assert not hits, ("SPEC.md lives outside the repository; cite the paper or the book's appendix "
                      "(book/conventions.md) instead:\n" + "\n".join(hits))


def test_scanner_finds_citations_and_skips_identifiers():
    src = 'SPEC = ClassSpec()\nx = SPEC.ids  # see SPEC, "Data"\n"""(SPEC.md, "Evaluation")"""\n'
    assert [n for n, _ in _hits_in_text(src, python=True)] == [2, 3]
    assert [n for n, _ in _hits_in_text(src, python=False)] == [1, 2, 3]
    assert _hits_in_text("ClassSpec and SPECTRUM and 2SPEC5", python=False) == []


def test_appendix_exists_and_is_in_the_toc():
    """The pages the docstrings now cite are part of the book."""
    page = ROOT / "book" / "conventions.md"
    assert page.exists()
    text = page.read_text(encoding="utf-8")
    for label in ("conv-backbone", "conv-losses", "conv-module-a", "conv-scoring", "conv-data",
                  "conv-evaluation", "conv-pseudo-quality", "conv-sparse", "conv-synthetic",
                  "conv-training"):
        assert f"({label})=" in text, f"book/conventions.md lost its label ({label})="
    assert "book/conventions" in (ROOT / "_toc.yml").read_text(encoding="utf-8")
