#!/usr/bin/env python3
"""Count TAP subtests across meson test logs and print the closing 'N passed, N failed' line.

A test program that printed TAP counts each `ok`/`not ok` line; a program that printed
none (it crashed, timed out or is not TAP) counts once, by its meson result."""
import json
import re
import sys

OK_RESULTS = {"OK", "EXPECTEDFAIL"}
SKIP_RESULTS = {"SKIP"}

passed = failed = skipped = 0
failures = []
for path in sys.argv[1:]:
    try:
        lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    except OSError as e:
        print(f"cannot read {path}: {e}")
        failed += 1
        continue
    for line in lines:
        if not line.strip():
            continue
        t = json.loads(line)
        name, result = t.get("name", "?"), t.get("result", "FAIL")
        out = t.get("stdout") or t.get("stdo") or ""
        tap = re.findall(r"^(ok|not ok)\b(.*)$", out, re.M)
        if not tap:
            if result in OK_RESULTS:
                passed += 1
            elif result in SKIP_RESULTS:
                skipped += 1
            else:
                failed += 1
                failures.append(f"{name}: {result}")
            continue
        for status, rest in tap:
            if re.search(r"#\s*skip", rest, re.I):
                skipped += 1
            elif status == "ok" or re.search(r"#\s*todo", rest, re.I):
                passed += 1
            else:
                failed += 1
                failures.append(f"{name}: not ok{rest}")
        # a program that died after some TAP lines still failed
        if result not in OK_RESULTS | SKIP_RESULTS and not any(s == "not ok" for s, _ in tap):
            failed += 1
            failures.append(f"{name}: {result} after {len(tap)} TAP lines")

for f in failures:
    print(f"FAILED {f}")
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
