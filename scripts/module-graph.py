#!/usr/bin/env python3
"""Module dependency graph of a Rust crate, and its cycles.

Reads every `.rs` file under a crate's `src/` (default `core/src`), finds which module each one
uses (`use crate::…`, `use super::…`, `crate::a::b` in code, paths through child modules), follows
re-exports (`pub use sub::Name` in a parent resolves to `sub`), and prints the cycles among the
crate's modules at two levels:

- top: the crate's top-level modules (`policy`, `kafka`, `catalog`, …);
- file: every module file (`policy::schema`, `policy::load`, …).

Comments and test code (`#[cfg(test)]` modules, inline or in their own file) are left out: they
do not make a dependency of the library. A module's edges to its own descendants are left out
too (a `mod.rs` declares its parts, re-exports and uses them: that is containment, not a
circle), unless `--strict`; a child using what its parent defines counts like any other edge.
So a cycle is always one through siblings (or cousins): `policy::schema` → `policy::load` →
`policy::schema`, or `kafka` → `policy` → `kafka`.

    scripts/module-graph.py                 # cycles in core/src, exit 1 if there are any
    scripts/module-graph.py --edges         # also every edge, with the first place that makes it
    scripts/module-graph.py restore-cli/src # another crate
    scripts/module-graph.py --strict        # parents' edges to their children count too

Text matching, not a compiler: macros that build paths and `#[path]` attributes are not seen.
"""

import argparse
import os
import re
import sys
from collections import defaultdict

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_comments_and_strings(text):
    """The text with comments removed and string/char literals emptied; lines kept."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if text[i] == "\n":
                        out.append("\n")
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and not re.match(r"\w", text[i - 1:i] or " "):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{1f}') or a lifetime ('a): only literals are skipped.
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:])
            if m:
                out.append("' '")
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_brace(text, open_at):
    depth = 0
    for j in range(open_at, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(text) - 1


def strip_test_modules(text):
    """Blanks `#[cfg(test)] mod x { … }` bodies (keeping line numbers); returns the text and the
    names of `#[cfg(test)] mod x;` declarations (their files are test code)."""
    test_files = set()
    pattern = re.compile(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*([;{])")
    while True:
        m = pattern.search(text)
        if not m:
            return text, test_files
        if m.group(2) == ";":
            test_files.add(m.group(1))
            text = text[: m.start()] + " " * (m.end() - m.start()) + text[m.end():]
            continue
        close = matching_brace(text, m.end() - 1)
        body = text[m.start(): close + 1]
        text = text[: m.start()] + re.sub(r"[^\n]", " ", body) + text[close + 1:]


def discover(src):
    """module path (tuple) → file, for every module file under `src`."""
    modules = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, f), src)
            parts = rel[:-3].split(os.sep)
            if parts in (["lib"], ["main"]):
                parts = []
            elif parts[-1] == "mod":
                parts = parts[:-1]
            if parts and parts[0] == "bin":
                continue
            modules.setdefault(tuple(parts), os.path.join(root, f))
    return modules


def use_statements(text):
    """Like use_trees, but keeps `as` aliases (spaces matter for them)."""
    for m in re.finditer(r"(?:^|(?<=[;{}\s]))((?:pub(?:\([^)]*\))?\s+)?)use\s+([^;]*);", text):
        public = bool(m.group(1).strip())
        for path, alias in expand_spaced(m.group(2)):
            yield public, path, alias, m.start(2)


def expand_spaced(tree):
    tree = tree.strip()
    if "{" not in tree:
        am = re.match(r"^(.*?)\s+as\s+(" + IDENT + r")$", tree)
        path, alias = (am.group(1), am.group(2)) if am else (tree, None)
        yield [p for p in re.sub(r"\s+", "", path).split("::") if p], alias
        return
    head, rest = tree.split("{", 1)
    inner = rest[: rest.rfind("}")]
    prefix = [p for p in re.sub(r"\s+", "", head).split("::") if p]
    depth, start, items = 0, 0, []
    for j, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(inner[start:j])
            start = j + 1
    items.append(inner[start:])
    for item in items:
        if item.strip():
            for path, alias in expand_spaced(item):
                yield prefix + path, alias


class Crate:
    def __init__(self, src):
        self.src = src
        self.files = discover(src)
        self.text = {}
        test_files = set()
        for mod, path in self.files.items():
            with open(path, encoding="utf-8") as f:
                text, tests = strip_test_modules(strip_comments_and_strings(f.read()))
            self.text[mod] = text
            test_files |= {mod + (t,) for t in tests}
        # Files of test modules, and everything below them, are not part of the library.
        self.modules = {
            m for m in self.files if not any(m[: len(t)] == t for t in test_files)
        }
        self.reexports = {m: {} for m in self.modules}
        for mod in self.modules:
            for public, path, alias, _ in use_statements(self.text[mod]):
                if public and path and path[-1] not in ("*", "self"):
                    self.reexports[mod][alias or path[-1]] = (mod, path)

    def absolute(self, mod, path):
        """A path as written in `mod` → absolute segments, or None if outside the crate."""
        if not path:
            return None
        if path[0] == "crate":
            return list(path[1:])
        if path[0] in ("super", "self"):
            base = list(mod)
            while path and path[0] in ("super", "self"):
                if path[0] == "super":
                    if not base:
                        return None
                    base.pop()
                path = path[1:]
            return base + list(path)
        if tuple(mod) + (path[0],) in self.modules:
            return list(mod) + list(path)
        return None

    def resolve(self, segments, depth=0):
        """Absolute segments → the module that defines what they name."""
        mod = ()
        i = 0
        while i < len(segments) and mod + (segments[i],) in self.modules:
            mod += (segments[i],)
            i += 1
        if i < len(segments) and depth < 10:
            target = self.reexports.get(mod, {}).get(segments[i])
            if target:
                at, path = target
                absolute = self.absolute(at, path)
                if absolute is not None:
                    return self.resolve(absolute + segments[i + 1:], depth + 1)
        return mod

    def edges(self, strict=False):
        """(from, to) → first (file, line) that makes the edge."""
        found = {}
        for mod in sorted(self.modules):
            text = self.text[mod]
            refs = []
            for _, path, _, at in use_statements(text):
                refs.append((path, at))
            # Paths in code: crate::…, super::…, self::…, child::… (not inside `use`).
            code = re.sub(r"(?:^|(?<=[;{}\s]))(?:pub(?:\([^)]*\))?\s+)?use\s+[^;]*;",
                          lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
            children = {m[-1] for m in self.modules if len(m) == len(mod) + 1 and m[: len(mod)] == mod}
            for m in re.finditer(r"(?<![\w:])((?:" + IDENT + r")(?:\s*::\s*" + IDENT + r")+)", code):
                path = re.sub(r"\s+", "", m.group(1)).split("::")
                if path[0] in ("crate", "super", "self") or path[0] in children:
                    refs.append((path, m.start()))
            for path, at in refs:
                absolute = self.absolute(mod, path)
                if absolute is None:
                    continue
                target = self.resolve(absolute)
                if target == mod or target not in self.modules:
                    continue
                if not strict and target[: len(mod)] == mod:
                    continue
                line = text.count("\n", 0, at) + 1
                found.setdefault((mod, target), (self.files[mod], line))
        return found


def name(mod):
    return "::".join(mod) if mod else "crate"


def cycles(nodes, edges):
    """Strongly connected components with more than one node (Tarjan)."""
    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", nargs="?", default="core/src", help="the crate's src/ (default core/src)")
    parser.add_argument("--edges", action="store_true", help="print every edge")
    parser.add_argument("--strict", action="store_true",
                        help="count a module's edges to its own children too")
    args = parser.parse_args()

    crate = Crate(args.src)
    file_edges = crate.edges(args.strict)
    top_edges = {}
    for (a, b), where in file_edges.items():
        ta, tb = a[:1], b[:1]
        if ta != tb and ta and tb:
            top_edges.setdefault((ta, tb), where)

    failed = False
    for level, edges, nodes in (
        ("top", top_edges, {m[:1] for m in crate.modules if m}),
        ("file", file_edges, crate.modules),
    ):
        if args.edges:
            print(f"{level}-level edges ({len(edges)}):")
            for (a, b), (path, line) in sorted(edges.items()):
                print(f"  {name(a)} -> {name(b)}    ({path}:{line})")
        found = cycles(nodes, edges)
        if not found:
            print(f"{level} level: {len(nodes)} modules, {len(edges)} edges, no cycles")
            continue
        failed = True
        print(f"{level} level: {len(found)} cycle(s):")
        for comp in found:
            members = set(comp)
            print("  " + " <-> ".join(name(m) for m in comp))
            for (a, b), (path, line) in sorted(edges.items()):
                if a in members and b in members:
                    print(f"    {name(a)} -> {name(b)}    ({path}:{line})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
