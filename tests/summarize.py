#!/usr/bin/env python3
"""Count the TAP checks of every pass of tests/run and print the closing 'N passed, N failed'.

usage: summarize.py [--required tests/required.txt] [--ci] [--run-problem TEXT]...
                    LABEL=TESTLOG.json ...

A test program that printed TAP counts each `ok`/`not ok` line; a program that printed none
(it crashed, timed out or is not TAP) counts once, by its meson result. A TODO is a failure:
`not ok ... # TODO` is a known failure, not a pass, and `ok ... # TODO` a marker left behind.
A pass whose log is missing or holds no test at all fails the run, and so does every
--run-problem (tests/run says so when a pass did not run).

With --required, the first pass (the main one) must have run every program listed there. With
--ci (or CI=true in the environment) a program missing from it, a program skipped as a whole,
or a skipped check whose reason no `allow-skip` line of that file accepts fails the run: in CI
a skip is a product or packaging failure unless it is known to be about the machine.

The last line is 'N passed, N failed' (checks counted in every pass); the line before it says
how many distinct checks that is and in how many passes they ran."""
import json
import os
import re
import sys

OK_RESULTS = {"OK", "EXPECTEDFAIL"}
SKIP_RESULTS = {"SKIP"}
TAP_LINE = re.compile(r"^(ok|not ok)\b\s*(\d+)?\s*(?:-\s*)?(.*)$", re.M)


def check_name(rest):
    """A check's name without its TAP directive, timing and note."""
    name = re.split(r"\s+#\s", rest, maxsplit=1)[0]
    name = re.sub(r"\s+\(\d+(\.\d+)? s\).*$", "", name)
    return name.strip()


def failure_reason(out, end):
    """The first TAP comment after a failed check (the tests print their exception there), so
    that the run's closing lines say why, not only what: bounded to one line of 300 characters."""
    for line in out[end:].splitlines()[1:6]:
        if TAP_LINE.match(line):
            break
        if line.startswith("# ") and line[2:].strip():
            text = line[2:].strip()
            return " -- " + (text[:297] + "..." if len(text) > 300 else text)
    return ""


def read_required(path):
    programs, allowed = [], []
    with open(path, encoding="utf-8") as fp:
        for line in fp:
            line = line.split("#", 1)[0].strip() if not line.startswith("allow-skip") else \
                line.strip()
            if not line:
                continue
            if line.startswith("allow-skip "):
                allowed.append(re.compile(line[len("allow-skip "):].strip()))
            else:
                suite, _, name = line.partition(" ")
                programs.append((suite.strip(), name.strip()))
    return programs, allowed


def main(argv):
    required_path, ci = None, os.environ.get("CI", "").lower() == "true"
    passes, run_problems = [], []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--required":
            required_path = argv[i + 1]
            i += 2
            continue
        if a == "--run-problem":
            run_problems.append(argv[i + 1])
            i += 2
            continue
        if a == "--ci":
            ci = True
        else:
            label, sep, path = a.partition("=")
            passes.append((label, path) if sep else (os.path.basename(a), a))
        i += 1
    required, allowed = read_required(required_path) if required_path else ([], [])

    passed = failed = skipped = 0
    failures, problems, skips = [], list(run_problems), []
    distinct = {}
    seen_main = {}
    for n, (label, path) in enumerate(passes):
        try:
            with open(path, encoding="utf-8", errors="replace") as fp:
                lines = [l for l in fp.read().splitlines() if l.strip()]
        except OSError as e:
            problems.append("%s pass: cannot read %s: %s" % (label, path, e))
            continue
        if not lines:
            problems.append("%s pass: %s holds no test: the pass did not run" % (label, path))
            continue
        for line in lines:
            t = json.loads(line)
            name, result = t.get("name", "?"), t.get("result", "FAIL")
            prog = name.split(" / ")[-1]
            if n == 0:
                seen_main[prog] = result
            out = t.get("stdout") or t.get("stdo") or ""
            tap = [(m.group(1), m.group(2), m.group(3), m.end()) for m in TAP_LINE.finditer(out)]
            whole_skip = re.search(r"^1\.\.0\s*#\s*skip\s*(.*)$", out, re.M | re.I)
            if whole_skip or (not tap and result in SKIP_RESULTS):
                skipped += 1
                reason = whole_skip.group(1) if whole_skip else "meson: SKIP"
                skips.append((label, prog, reason))
                if n == 0:
                    seen_main[prog] = "SKIP"
                continue
            if not tap:
                if result in OK_RESULTS:
                    passed += 1
                    distinct.setdefault((prog, ""), set()).add(label)
                else:
                    failed += 1
                    failures.append("%s: %s: %s" % (label, name, result))
                continue
            for status, _num, rest, end in tap:
                directive = re.search(r"#\s*(skip|todo)\b\s*(.*)$", rest, re.I)
                kind = directive.group(1).lower() if directive else None
                if kind == "skip":
                    skipped += 1
                    skips.append((label, prog, directive.group(2).strip() or check_name(rest)))
                    continue
                distinct.setdefault((prog, check_name(rest)), set()).add(label)
                if status == "ok" and kind is None:
                    passed += 1
                else:
                    failed += 1
                    why = " (a TODO counts as a failure)" if kind == "todo" else ""
                    failures.append("%s: %s: %s %s%s%s" % (label, prog, status, rest.strip(), why,
                                                          failure_reason(out, end)))
            # a program that died after some TAP lines still failed
            if result not in OK_RESULTS | SKIP_RESULTS and not any(t[0] == "not ok" for t in tap):
                failed += 1
                failures.append("%s: %s: %s after %d TAP lines" % (label, name, result, len(tap)))

    if required and passes:
        for suite, prog in required:
            if prog not in seen_main:
                problems.append("required test %s (suite %s) did not run in the %s pass" % (
                    prog, suite, passes[0][0]))
    if ci:
        for label, prog, reason in skips:
            if not any(rx.search(reason) for rx in allowed):
                problems.append("%s: %s skipped: %s (in CI a skip must be allowed in %s)" % (
                    label, prog, reason, required_path or "the required list"))

    for f in failures:
        print("FAILED %s" % f)
    for p in problems:
        print("RUN PROBLEM %s" % p)
    failed += len(problems)
    labels = [label for label, _ in passes]
    print("%d distinct checks ran in %d passes (%s); %d skipped; the line below counts every "
          "check once per pass" % (len(distinct), len(passes), ", ".join(labels), skipped))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
