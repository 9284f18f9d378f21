#!/bin/bash
# unit-env.sh — the environment the shipped systemd unit gives the agent (the Environment=
# lines of packaging/migration-agent.service.in), one KEY=VALUE a line. The benchmarks run the
# agent with it, as it runs in a guest; MA_BENCH_UNIT_ENV=0 makes this print nothing.
set -euo pipefail
[ "${MA_BENCH_UNIT_ENV:-1}" = 1 ] || exit 0
sed -n 's/^Environment=//p' "$(dirname "$0")/../../packaging/migration-agent.service.in" \
  | tr ' ' '\n' | sed '/^$/d'
