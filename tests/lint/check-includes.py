#!/usr/bin/env python3
"""The include graph of agent/ is a DAG, the client keeps to its side, and no .c is too long.

A module is a .c/.h pair (agent/NAME or agent/client/NAME; a NAME-private.h belongs to NAME);
module A depends on module B when A.c or A.h includes B.h. Checks:
  - no cycle between modules (a module including its own header is not a cycle);
  - the client (agent/client/) includes, of the daemon's headers, only the shared leaves
    error.h, json.h and protocol.h;
  - the daemon never includes a client header;
  - no .c file of agent/ or agent/client/ is over MAX_LINES lines (one concern per module).
Prints TAP. usage: check-includes.py AGENT_DIR
"""
import os
import re
import sys

SHARED_WITH_CLIENT = {"error", "json", "protocol"}
GENERATED = {"buildconfig.h"}
MAX_LINES = 1200
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def modules(agent_dir):
    found = {}
    for sub, prefix in (("", ""), ("client", "client/")):
        folder = os.path.join(agent_dir, sub)
        for name in sorted(os.listdir(folder)):
            stem, ext = os.path.splitext(name)
            stem = stem[:-len("-private")] if stem.endswith("-private") else stem
            if ext in (".c", ".h"):
                found.setdefault(prefix + stem, []).append(os.path.join(folder, name))
    return found


def resolve(module, header, known):
    stem = os.path.splitext(header)[0]
    stem = stem[:-len("-private")] if stem.endswith("-private") else stem
    if module.startswith("client/") and "client/" + stem in known:
        return "client/" + stem
    if stem in known:
        return stem
    return None


def main():
    agent_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "..", "agent")
    known = modules(agent_dir)
    graph = {m: set() for m in known}
    problems = []
    for module, files in known.items():
        for path in files:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for header in INCLUDE.findall(text):
                if header in GENERATED:
                    continue
                target = resolve(module, header, known)
                if target is None:
                    problems.append(f"{path}: includes {header}, which is no module of agent/")
                    continue
                if module.startswith("client/") and not target.startswith("client/") \
                        and target not in SHARED_WITH_CLIENT:
                    problems.append(f"{path}: the client includes the daemon's {header} "
                                    f"(only {', '.join(sorted(SHARED_WITH_CLIENT))} are shared)")
                if not module.startswith("client/") and target.startswith("client/"):
                    problems.append(f"{path}: the daemon includes the client's {header}")
                if target != module:
                    graph[module].add(target)

    # depth-first search for a back edge; report each cycle once, as a path
    cycles = []
    colour = {m: 0 for m in graph}  # 0 new, 1 on the stack, 2 done
    stack = []

    def visit(m):
        colour[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if colour[n] == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif colour[n] == 0:
                visit(n)
        stack.pop()
        colour[m] = 2

    sys.setrecursionlimit(10000)
    for m in sorted(graph):
        if colour[m] == 0:
            visit(m)

    too_long = []
    for files in known.values():
        for path in files:
            if path.endswith(".c"):
                with open(path, encoding="utf-8") as f:
                    n = sum(1 for _ in f)
                if n > MAX_LINES:
                    too_long.append(f"{os.path.relpath(path, agent_dir)}: {n} lines")

    print("1..4")
    print(f"{'ok' if not cycles else 'not ok'} 1 - the include graph of {len(graph)} modules "
          "is acyclic")
    for c in cycles:
        print("# cycle: " + " -> ".join(c))
    client = [p for p in problems if "client" in p]
    other = [p for p in problems if p not in client]
    print(f"{'ok' if not client else 'not ok'} 2 - the client and the daemon keep to their sides")
    for p in client:
        print("# " + p)
    print(f"{'ok' if not other else 'not ok'} 3 - every quoted include names a module of agent/")
    for p in other:
        print("# " + p)
    print(f"{'ok' if not too_long else 'not ok'} 4 - no .c file of agent/ is over {MAX_LINES} "
          "lines")
    for p in sorted(too_long):
        print(f"# {p} (split it along its seams)")
    return 1 if cycles or problems or too_long else 0


if __name__ == "__main__":
    sys.exit(main())
