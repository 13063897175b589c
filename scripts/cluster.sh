#!/usr/bin/env bash
# Run N rollcall peers on loopback and check that every one reaches READY.
#
# usage: scripts/cluster.sh                      (or: make cluster N=16)
#
# Environment:
#   N             number of peers (default 5); peer i (1..N) is 127.0.0.1:BASE_PORT+i
#   BASE_PORT     default 7610, so peers listen on 7611..7610+N
#   ROLLCALL_BIN  binary to run (default: target/release/rollcall of this repo)
#   ARGS          extra arguments for every peer, split on whitespace,
#                 e.g. ARGS="--interval 500ms --debug"
#   WAIT          seconds to wait for every peer to be READY (default 30)
#   HOLD=1        after READY keep the peers running until Ctrl-C or until
#                 they exit on their own --timeout, 120s by default, whichever
#                 comes first (ARGS="-t 1h" keeps them an hour)
#
# Each line a peer writes is shown prefixed with its name (`peer3 | ...`):
# stdout on stdout, stderr on stderr. The last line is a one-line summary.
#
# Exit status: 0 if every peer reached READY, 1 if not, 2 on bad usage,
# 130/143 when interrupted by SIGINT/SIGTERM. Every process started here is
# stopped, and the temporary directory removed, on any exit.
set -euo pipefail

prog=cluster
die() {
	printf '%s: %s\n' "$prog" "$*" >&2
	exit 2
}

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)

N=${N:-5}
BASE_PORT=${BASE_PORT:-7610}
WAIT=${WAIT:-30}
HOLD=${HOLD:-0}
ARGS=${ARGS:-}
bin=${ROLLCALL_BIN:-$root/target/release/rollcall}

[[ $N =~ ^[1-9][0-9]{0,4}$ ]] || die "N must be a positive integer (got '$N')"
[[ $BASE_PORT =~ ^[0-9]{1,5}$ ]] || die "BASE_PORT must be a port number (got '$BASE_PORT')"
N=$((10#$N))
BASE_PORT=$((10#$BASE_PORT))
((BASE_PORT + N <= 65535)) || die "ports $((BASE_PORT + 1))..$((BASE_PORT + N)) do not fit below 65536 (BASE_PORT=$BASE_PORT, N=$N)"
[[ $WAIT =~ ^([0-9]{1,6})([.]([0-9]{1,6}))?$ ]] || die "WAIT must be a number of seconds (got '$WAIT')"
frac=${BASH_REMATCH[3]}000000
wait_us=$((10#${BASH_REMATCH[1]} * 1000000 + 10#${frac:0:6}))
[[ $HOLD == 0 || $HOLD == 1 ]] || die "HOLD must be 0 or 1 (got '$HOLD')"
if [[ ! -f $bin || ! -x $bin ]]; then
	die "$bin: no such executable (run 'make build', or set ROLLCALL_BIN)"
fi
read -r -a extra_args <<<"$ARGS"

# Microseconds since the epoch, without forking (EPOCHREALTIME is bash 5).
now_us() { printf -v "$1" '%s' "${EPOCHREALTIME//[.,]/}"; }
# Seconds with two decimals, from microseconds.
secs() { printf '%d.%02d' $(($1 / 1000000)) $((($1 % 1000000) / 10000)); }

# running PID: the process exists and has not exited (a zombie counts as exited).
running() {
	local stat
	{ read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

# wait_gone MICROSECONDS PID...: poll until none of PIDs is running; 1 on timeout.
wait_gone() {
	local limit=$1 t end pid alive
	shift
	now_us t
	end=$((t + limit))
	while :; do
		alive=0
		for pid in "$@"; do
			if running "$pid"; then
				alive=1
				break
			fi
		done
		((alive)) || return 0
		now_us t
		((t < end)) || return 1
		sleep 0.01
	done
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/rollcall-cluster.XXXXXX")
hosts=$tmp/hosts
declare -a pids=()    # pids[i]: rollcall process of peer i
declare -a status=()  # status[i]: exit status once reaped
declare -a state=()   # state[i]: "" while waiting, "ready" or "failed"

# Reap peer I if it has exited; record its exit status. 1 if still running.
reap() {
	local i=$1 rc=0
	[[ -n ${status[i]:-} ]] && return 0
	running "${pids[i]}" && return 1
	wait "${pids[i]}" 2>/dev/null || rc=$?
	status[i]=$rc
}

# Stop every peer (SIGTERM, SIGKILL after 3 s), then the line prefixers, which
# end by themselves at end of input once their peer is gone (SIGKILL after 1 s).
stop_all() {
	local i pid f
	local -a live=() prefixers=()
	for i in "${!pids[@]}"; do
		if ! reap "$i"; then
			kill -TERM "${pids[i]}" 2>/dev/null || true
			live+=("${pids[i]}")
		fi
	done
	if ((${#live[@]})) && ! wait_gone 3000000 "${live[@]}"; then
		printf '%s: peers still running 3s after SIGTERM, sending SIGKILL\n' "$prog" >&2
		for pid in "${live[@]}"; do
			kill -KILL "$pid" 2>/dev/null || true
		done
	fi
	for i in "${!pids[@]}"; do
		reap "$i" || { wait "${pids[i]}" 2>/dev/null || status[i]=$?; }
	done
	for f in "$tmp"/peer*.pid; do
		[[ -f $f ]] || continue
		read -r pid <"$f" 2>/dev/null || continue
		[[ $pid =~ ^[0-9]+$ ]] && prefixers+=("$pid")
	done
	if ((${#prefixers[@]})) && ! wait_gone 1000000 "${prefixers[@]}"; then
		for pid in "${prefixers[@]}"; do
			running "$pid" && kill -KILL "$pid" 2>/dev/null
		done
	fi
	return 0
}

# shellcheck disable=SC2317  # reached through the traps below
cleanup() {
	local rc=$?
	trap '' INT TERM
	stop_all || true
	rm -rf -- "$tmp"
	exit "$rc"
}
# shellcheck disable=SC2317
interrupted() {
	printf '\n%s: %s, stopping %d peers\n' "$prog" "$1" "${#pids[@]}" >&2
	exit "$2"
}
trap cleanup EXIT
trap 'interrupted SIGINT 130' INT
trap 'interrupted SIGTERM 143' TERM

# prefix LABEL PIDFILE: copy standard input to standard output, line by line,
# each line prefixed with "LABEL | "; PIDFILE receives the prefixer's pid.
# It ignores SIGINT so that on Ctrl-C the peers' last lines still get through;
# it ends at end of input, when its peer has exited.
prefix() {
	trap '' INT
	printf '%s\n' "$BASHPID" >"$2"
	exec sed -u "s/^/$1 | /"
}

label_width=$((4 + ${#N}))
declare -a names=() labels=()
for ((i = 1; i <= N; i++)); do
	names[i]=127.0.0.1:$((BASE_PORT + i))
	printf -v 'labels[i]' '%-*s' "$label_width" "peer$i"
	printf '%s\n' "${names[i]}"
done >"$hosts"

printf '%s: starting %d peers on 127.0.0.1:%d..%d (%s%s)\n' "$prog" "$N" \
	$((BASE_PORT + 1)) $((BASE_PORT + N)) "${bin#"$root"/}" "${ARGS:+ $ARGS}"

started=0 now=0
now_us started
for ((i = 1; i <= N; i++)); do
	# $! is rollcall itself: the prefixers are process substitutions.
	"$bin" --hosts "$hosts" --name "${names[i]}" --ready-file "$tmp/peer$i.ready" "${extra_args[@]}" \
		> >(prefix "${labels[i]}" "$tmp/peer$i.out.pid") \
		2> >(prefix "${labels[i]}" "$tmp/peer$i.err.pid" >&2) &
	pids[i]=$!
done

# Wait until every peer is READY (its ready file exists), one exits early, or WAIT runs out.
ready=0 failed=0 timed_out=0
while :; do
	for ((i = 1; i <= N; i++)); do
		[[ -z ${state[i]:-} ]] || continue
		if [[ -e $tmp/peer$i.ready ]]; then
			state[i]=ready
			ready=$((ready + 1))
		elif reap "$i"; then
			# Exit 0 means READY was reached (e.g. ARGS=--barrier removes the file on exit).
			if ((status[i] == 0)); then
				state[i]=ready
				ready=$((ready + 1))
			else
				state[i]=failed
				failed=$((failed + 1))
			fi
		fi
	done
	now_us now
	elapsed=$((now - started))
	((ready + failed < N && failed == 0)) || break
	if ((elapsed >= wait_us)); then
		timed_out=1
		break
	fi
	sleep 0.01
done

# Build the summary: which peers failed, which never got READY.
problems=()
for ((i = 1; i <= N; i++)); do
	if [[ ${state[i]:-} == failed ]]; then
		problems+=("peer$i (${names[i]}) exited with code ${status[i]}")
	fi
done
missing=()
for ((i = 1; i <= N; i++)); do
	[[ -n ${state[i]:-} ]] || missing+=("peer$i")
done
if ((${#missing[@]})); then
	if ((timed_out)); then
		problems+=("timed out after ${WAIT}s waiting for ${missing[*]}")
	else
		problems+=("not READY: ${missing[*]}")
	fi
fi

if ((ready == N)); then
	summary="$prog: $N/$N peers READY in $(secs "$elapsed")s"
else
	summary="$prog: FAILED: $ready/$N peers READY after $(secs "$elapsed")s"
	for p in "${problems[@]}"; do
		summary+="; $p"
	done
fi

if ((HOLD && ready == N)); then
	printf '%s\n%s: holding the peers; Ctrl-C to stop\n' "$summary" "$prog"
	rc=0
	for ((i = 1; i <= N; i++)); do
		reap "$i" || { wait "${pids[i]}" || status[i]=$?; }
		status[i]=${status[i]:-0}
		if ((status[i] != 0)); then
			printf '%s: peer%d exited with code %d\n' "$prog" "$i" "${status[i]}" >&2
			rc=1
		fi
	done
	printf '%s: every peer has exited\n' "$prog"
	exit "$rc"
fi

# Stop everything first so that the peers' last lines come before the summary.
stop_all
if ((ready == N)); then
	printf '%s\n' "$summary"
	exit 0
fi
printf '%s\n' "$summary" >&2
exit 1
