#!/usr/bin/env python3
"""Checks the crate's layering from its `use` paths: no two modules of a
crate import each other, directly or round a longer loop (a parent and its
own submodules aside), and tonic's generated services (`*_server::`)
appear only in the gRPC edge (`src/api/`) and where the server wires it
(`src/server/`). Reads the source text; no build needed."""

import collections
import os
import re
import sys

USE = re.compile(r"\b(crate|super)::([\w:]+)(::\{([^}]*)\})?")


def modules(root):
    found = {}
    for directory, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(directory, name)
            parts = os.path.relpath(path, root)[:-3].split(os.sep)
            if parts[-1] == "mod":
                parts = parts[:-1]
            if parts in (["lib"], ["main"]):
                parts = []
            found["::".join(parts)] = path
    return found


def edges(found):
    graph = collections.defaultdict(set)
    for module, path in found.items():
        text = open(path, encoding="utf-8").read()
        text = re.split(r"#\[cfg\(test\)\]\s*mod tests", text)[0]
        parent = module.rsplit("::", 1)[0] if "::" in module else ""
        for match in USE.finditer(text):
            rest = match.group(2).rstrip(":")
            if match.group(1) == "super":
                rest = f"{parent}::{rest}" if parent else rest
            targets = [rest]
            if match.group(4):
                targets = [f"{rest}::{item.strip().split(' ')[0]}"
                           for item in match.group(4).split(",") if item.strip()]
            for target in targets:
                segments = target.split("::")
                for end in range(len(segments), 0, -1):
                    candidate = "::".join(segments[:end])
                    if candidate in found:
                        if (candidate != module and not module.startswith(candidate + "::")
                                and not candidate.startswith(module + "::")):
                            graph[module].add(candidate)
                        break
    return graph


def cycles(graph, nodes):
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return found


def main():
    failures = []
    for root in ("src", "bench/src"):
        found = modules(root)
        for component in cycles(edges(found), found):
            failures.append(f"{root}: import cycle among {', '.join(component)}")
    for directory, _, files in os.walk("src"):
        if directory.startswith(("src/api", "src/server")):
            continue
        for name in files:
            path = os.path.join(directory, name)
            if not name.endswith(".rs"):
                continue
            for number, line in enumerate(open(path, encoding="utf-8"), 1):
                if re.search(r"\w+_server::", line) and not line.lstrip().startswith("//"):
                    failures.append(f"{path}:{number}: a generated gRPC service outside src/api")
    for failure in failures:
        print(failure)
    if failures:
        sys.exit(1)
    print("layers: no import cycles; generated services only in src/api and src/server")


if __name__ == "__main__":
    main()
