#!/usr/bin/env python3
"""CI: every relative link in the tracked markdown files resolves.

A link's file must exist and be tracked by git (a file only a build makes
would be missing from a clean clone), and a `#anchor` must name a heading
of the file it points into, slugged as GitHub slugs headings: lowercase,
punctuation other than `-` and `_` dropped, each space a `-`, and a
repeated heading `-1`, `-2`, ... Links with a scheme (`https:`, `mailto:`)
are skipped: this check makes no network calls. Links inside code blocks
and code spans are not links and are skipped too.

Prints each broken link as `file:line: link (why)` and exits 1; exits 0
with a one-line summary when every link resolves.

    python3 .ci/links.py            # the tracked *.md files
    python3 .ci/links.py FILE.md... # only these (e.g. to try a change)
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent

FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})")
ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
# [text](target "title") and ![alt](target); text may hold one level of [].
INLINE = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"
    r"\(\s*(<[^>\n]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)"
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)"
)
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*(<[^>\n]*>|\S+)", re.M)
HTML_ID = re.compile(r"<[a-zA-Z][^>]*?\s(?:id|name)=[\"']([^\"']+)[\"']")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def tracked() -> set[str] | None:
    """Paths git tracks, relative to the root; None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {p for p in out.decode().split("\0") if p}


def blank_code(text: str) -> str:
    """The text with fenced blocks and code spans blanked out, same offsets."""
    lines = text.split("\n")
    out = []
    fence = None
    for line in lines:
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(2)[0] * len(m.group(2))
            out.append(" " * len(line))
        elif fence is not None:
            if m and m.group(2).startswith(fence) and not line.strip()[len(m.group(2)) :]:
                fence = None
            out.append(" " * len(line))
        else:
            out.append(line)
    text = "\n".join(out)
    return CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def heading_text(raw: str) -> str:
    """A heading's text as GitHub renders it: markup gone, code kept."""
    parts = []
    last = 0
    for m in CODE_SPAN.finditer(raw):
        parts.append(("text", raw[last : m.start()]))
        parts.append(("code", m.group(2).strip() if m.group(2).strip() else m.group(2)))
        last = m.end()
    parts.append(("text", raw[last:]))
    rendered = []
    for kind, part in parts:
        if kind == "text":
            part = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", part)  # links, images
            part = re.sub(r"<[^>]+>", "", part)  # inline HTML
            part = part.replace("*", "")
            part = re.sub(r"(?<!\w)_+|_+(?!\w)", "", part)  # _emphasis_
        rendered.append(part)
    return "".join(rendered).strip()


def slug(text: str) -> str:
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: Path, cache: dict[Path, set[str]]) -> set[str]:
    if path in cache:
        return cache[path]
    text = path.read_text(encoding="utf-8")
    lines = blank_code(text).split("\n")
    raw_lines = text.split("\n")
    seen: dict[str, int] = {}
    found: set[str] = set()

    def add(base: str) -> None:
        name = base
        n = seen.get(base, 0)
        while name in found:
            n += 1
            name = f"{base}-{n}"
        seen[base] = n
        found.add(name)

    for i, line in enumerate(lines):
        if not line.strip():
            continue  # blank, or inside a code block
        m = ATX.match(raw_lines[i])
        if m:
            add(slug(heading_text(m.group(2) or "")))
            continue
        if (
            SETEXT.match(line)
            and i > 0
            and lines[i - 1].strip()
            and not ATX.match(lines[i - 1])
            and not lines[i - 1].lstrip().startswith(("|", "-", "*", ">"))
        ):
            add(slug(heading_text(raw_lines[i - 1].strip())))
    for m in HTML_ID.finditer(text):
        found.add(m.group(1))
    cache[path] = found
    return found


def check(md: Path, files: set[str] | None, cache: dict[Path, set[str]]) -> tuple[int, list[str]]:
    text = md.read_text(encoding="utf-8")
    blanked = blank_code(text)
    targets: list[tuple[int, str]] = []
    for m in INLINE.finditer(blanked):
        targets.append((m.start(1), m.group(1)))
    for m in REFERENCE.finditer(blanked):
        targets.append((m.start(1), m.group(1)))
    broken = []
    checked = 0
    rel_md = md.relative_to(ROOT).as_posix()
    for offset, target in sorted(targets):
        line = text.count("\n", 0, offset) + 1
        link = target[1:-1] if target.startswith("<") else target
        if not link or SCHEME.match(link) or link.startswith("//"):
            continue
        checked += 1
        where = f"{rel_md}:{line}: {link}"
        path_part, _, anchor = link.partition("#")
        path_part = unquote(path_part.split("?", 1)[0])
        if path_part:
            base = ROOT if path_part.startswith("/") else md.parent
            dest = (base / path_part.lstrip("/")).resolve()
        else:
            dest = md
        try:
            rel = dest.relative_to(ROOT).as_posix()
        except ValueError:
            broken.append(f"{where} (outside the repository)")
            continue
        if not dest.exists():
            broken.append(f"{where} (no such file: {rel})")
            continue
        if files is not None and path_part and dest != ROOT:
            in_git = rel in files if dest.is_file() else any(f.startswith(rel + "/") for f in files)
            if not in_git:
                broken.append(f"{where} (not tracked by git: {rel})")
                continue
        if anchor and dest.is_file() and dest.suffix.lower() == ".md":
            if unquote(anchor) not in anchors(dest, cache):
                broken.append(f"{where} (no heading `#{anchor}` in {rel})")
        elif anchor and dest.is_dir():
            broken.append(f"{where} (an anchor on a directory)")
    return checked, broken


def main(argv: list[str]) -> int:
    files = tracked()
    if argv:
        mds = [Path(a).resolve() for a in argv]
    elif files is not None:
        mds = [ROOT / f for f in sorted(files) if f.lower().endswith(".md")]
    else:
        skip = {".git", "target", "node_modules"}
        mds = sorted(
            p for p in ROOT.rglob("*.md") if not skip.intersection(p.relative_to(ROOT).parts)
        )
    cache: dict[Path, set[str]] = {}
    total = 0
    broken: list[str] = []
    for md in mds:
        if not md.is_file() or not md.is_relative_to(ROOT):
            broken.append(f"{md}: not a file in the repository")
            continue
        checked, bad = check(md, files, cache)
        total += checked
        broken.extend(bad)
    for line in broken:
        print(line)
    if broken:
        summary = f"{len(broken)} broken of {total} relative links in {len(mds)} files"
        print(f"links: {summary}", file=sys.stderr)
        return 1
    print(f"links: {total} relative links in {len(mds)} files resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
