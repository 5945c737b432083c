#!/usr/bin/env bash
# Counts the events of a dpkg log per package and action through a running counterd, sending
# every add twice under one idempotency token, then compares each counter with a count of the
# same file made by awk.
#
# Counter names, in namespace "default" unless --namespace is given:
#   ACTION:PACKAGE        for install, upgrade, remove, purge, configure and trigproc lines,
#                         for example "install:libc6:amd64"
#   status:STATE:PACKAGE  for status lines, for example "status:installed:libc6:amd64"
# Other lines ("startup", "conffile") are not counted. --prefix puts a string in front of every
# name, to keep runs over different files apart.
#
# The token of an event is "dpkg-LINE-HASH": its line number and the first 16 hex digits of
# the SHA-256 of the line. A rerun over the same file therefore sends the same tokens, and the
# server counts nothing twice as long as it keeps them (the namespace's retention, 24h by
# default).
# Both copies of an add carry the same token and generation time and are sent concurrently.
#
# The script talks only to --server (default localhost:8080) through the counterd CLI. It
# exits 0 when every counter matches, 1 on mismatches or failed adds, and 2 on usage errors.
#
# Usage: hack/dpkg-example.sh [--server ADDR] [--log FILE] [--namespace NS] [--prefix STR]
#                             [--counterd BIN] [--jobs N] [--verify-timeout SECONDS]
set -euo pipefail

server=localhost:8080
log=/var/log/dpkg.log
namespace=default
prefix=
counterd=${COUNTERD:-}
jobs=4
verify_timeout=60

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--server) server=${2:?--server needs an address}; shift 2 ;;
	--log) log=${2:?--log needs a file}; shift 2 ;;
	--namespace) namespace=${2:?--namespace needs a name}; shift 2 ;;
	--prefix) prefix=${2?--prefix needs a value}; shift 2 ;;
	--counterd) counterd=${2:?--counterd needs a path}; shift 2 ;;
	--jobs) jobs=${2:?--jobs needs a number}; shift 2 ;;
	--verify-timeout) verify_timeout=${2:?--verify-timeout needs seconds}; shift 2 ;;
	-h | --help) usage ;;
	*) echo "dpkg-example: unknown argument $1; run with --help for the options" >&2; exit 2 ;;
	esac
done

if [ ! -r "$log" ]; then
	echo "dpkg-example: cannot read $log; pass a readable dpkg log with --log FILE" >&2
	exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Without --counterd or COUNTERD, use counterd from PATH, or build it from this repository.
if [ -z "$counterd" ]; then
	if command -v counterd >/dev/null; then
		counterd=$(command -v counterd)
	else
		repo=$(cd "$(dirname "$0")/.." && pwd)
		echo "dpkg-example: building counterd from $repo"
		(cd "$repo" && go build -o "$work/counterd" ./counterd/cmd/counterd)
		counterd=$work/counterd
	fi
fi
export counterd server namespace

# One line per counted event: line number, counter name, the whole log line.
awk -v prefix="$prefix" '
	$3 ~ /^(install|upgrade|remove|purge|configure|trigproc)$/ && NF >= 4 {
		printf "%d\t%s%s:%s\t%s\n", NR, prefix, $3, $4, $0; next
	}
	$3 == "status" && NF >= 5 {
		printf "%d\t%sstatus:%s:%s\t%s\n", NR, prefix, $4, $5, $0
	}' "$log" >"$work/events"

# The expected counts, made by a separate awk pass over the log so that the event list above is
# checked too.
awk -v prefix="$prefix" '
	$3 ~ /^(install|upgrade|remove|purge|configure|trigproc)$/ && NF >= 4 { count[prefix $3 ":" $4]++ }
	$3 == "status" && NF >= 5 { count[prefix "status:" $4 ":" $5]++ }
	END { for (name in count) print name, count[name] }' "$log" | sort >"$work/expected"

# One task per event: counter name and token.
while IFS=$'\t' read -r line_number counter line; do
	hash=$(printf '%s' "$line" | sha256sum | cut -c1-16)
	printf '%s dpkg-%s-%s\n' "$counter" "$line_number" "$hash"
done <"$work/events" >"$work/tasks"

events=$(wc -l <"$work/tasks")
counters=$(wc -l <"$work/expected")
echo "dpkg-example: $events events in $counters counters from $log, sending each add twice to $server"

# send_twice COUNTER TOKEN sends the add +1 twice at once with one token and generation time,
# and prints the counter if either copy failed.
send_twice() {
	local at first=0 second=0
	at=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
	"$counterd" add --server "$server" --token "$2" --time "$at" "$namespace" "$1" 1 &
	"$counterd" add --server "$server" --token "$2" --time "$at" "$namespace" "$1" 1 || second=$?
	wait $! || first=$?
	if [ "$first" -ne 0 ] || [ "$second" -ne 0 ]; then
		echo "$1"
	fi
}
export -f send_twice

start=$(date +%s)
xargs -P "$jobs" -n 2 bash -c 'send_twice "$0" "$1"' <"$work/tasks" >"$work/failed"
echo "dpkg-example: sent $((events * 2)) adds in $(($(date +%s) - start))s, $(wc -l <"$work/failed") events with a failed copy"

# The default namespace folds adds into its checkpoints once they are older than the accept
# limit (5s) plus the skew margin (0.5s), so reads lag adds by about that much.
sleep 6

# check_counter COUNTER EXPECTED prints "COUNTER EXPECTED GOT" when the server's value differs.
check_counter() {
	local got
	got=$("$counterd" get --server "$server" "$namespace" "$1" 2>&1) || got="error: $got"
	if [ "$got" != "$2" ]; then
		echo "$1 $2 $got"
	fi
}
export -f check_counter

# Poll the counters that still differ until all match or the verify timeout passes.
cp "$work/expected" "$work/pending"
deadline=$(($(date +%s) + verify_timeout))
while :; do
	xargs -P "$jobs" -n 2 bash -c 'check_counter "$0" "$1"' <"$work/pending" >"$work/mismatches"
	cut -d' ' -f1,2 "$work/mismatches" >"$work/pending"
	if [ ! -s "$work/pending" ] || [ "$(date +%s)" -ge "$deadline" ]; then
		break
	fi
	sleep 1
done

mismatches=$(wc -l <"$work/mismatches")
failed=$(wc -l <"$work/failed")
echo "dpkg-example: $((counters - mismatches)) of $counters counters match the awk count, $mismatches mismatches"
if [ "$mismatches" -gt 0 ]; then
	echo "counter expected got:"
	head -n 20 "$work/mismatches"
fi
if [ "$mismatches" -gt 0 ] || [ "$failed" -gt 0 ]; then
	exit 1
fi
