#!/bin/bash
# pgload.sh — the write load of the Debian guest (tests/vm/debianlib.py puts it in /run and
# starts it as a transient unit, User=postgres). One psql session (a coprocess) commits numbered
# rows one at a time (autocommit, synchronous_commit on): the client sends the INSERT and a
# marker psql prints only once the INSERT returned, i.e. once the server acknowledged the
# commit, and sends the next row only after reading it. Every acknowledged id is logged with
# the guest's time to $OUT/acked, on /run (tmpfs): a filesystem freeze blocks the database,
# never the log.
#   $OUT/acked    "EPOCHREALTIME ID" per acknowledged commit; any other line is a failure
#   $OUT/errors   psql's stderr (an error ends the session: ON_ERROR_STOP)
#   $OUT/status   "exit STATUS LAST" once the load ended (psql's exit status, last id sent)
# Stop: touch $OUT/stop; psql quits after the row in flight. Started again, a client goes on
# from the table's highest id and appends to the same log.
OUT=${OUT:-/run/pgload}
DB=${DB:-loaddb}
trap '' PIPE
i=$(psql -X -At -d "$DB" -c 'SELECT coalesce(max(id), 0) FROM acked' 2>>"$OUT/errors") \
    || { echo "exit 2 start" > "$OUT/status"; exit 2; }
exec 3>>"$OUT/acked"
coproc PSQL { exec stdbuf -oL psql -X -q -v ON_ERROR_STOP=1 -d "$DB" 2>>"$OUT/errors"; }
in=${PSQL[1]}
out=${PSQL[0]}
pid=$PSQL_PID
while [ ! -e "$OUT/stop" ]; do
    i=$((i + 1))
    printf 'INSERT INTO acked(id) VALUES (%d);\n\\echo ACK %d\n' "$i" "$i" >&"$in" \
        || { echo "LOST $i (write)" >&3; break; }
    read -r word id <&"$out" || { echo "LOST $i (psql ended)" >&3; break; }
    if [ "$word" != ACK ] || [ "$id" != "$i" ]; then
        echo "OTHER $word $id (sent $i)" >&3
        break
    fi
    echo "$EPOCHREALTIME $i" >&3
done
printf '\\q\n' >&"$in"
wait "$pid"
rc=$?
echo "exit $rc $i" > "$OUT/status"
