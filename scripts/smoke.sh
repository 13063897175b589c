#!/usr/bin/env bash
# Container smoke tests: the image rollcall:latest (and, for the scenario
# job, the image rollcall-hello-job:latest built on it) in docker compose,
# one compose project per scenario, each one always removed again.
#
# usage: scripts/smoke.sh [--auto] [--build] [SCENARIO...]
#        scripts/smoke.sh --cleanup
#
#   (no option)  run the scenarios against the existing image (`make smoke`
#                builds it first); no Docker engine is a failure
#   --auto       for `make test`: without a reachable Docker engine (or a
#                compose tool) print one `smoke: SKIPPED: ...` line and exit
#                0, except under CI=true, where that is a failure; otherwise
#                build the images (`$MAKE -C ROOT job-image`, or `image` when
#                the scenario job is not run) and run
#   --build      build the images first (implied by --auto)
#   --cleanup    remove what an earlier run left behind (containers and
#                networks of compose projects rcsmoke-*; also those of a run
#                still going, so not while one is), then exit
#   SCENARIO     run only these, in the order below (default: all)
#
# Scenarios (each in compose project rcsmoke-SCENARIO-PID):
#   ready       five peers start together: each prints READY once, and its
#               healthcheck turns healthy
#   late-start  four peers start, the fifth 10 s later: all READY, the four
#               within 1 s of the fifth's start line (log timestamps)
#   restart     a READY peer is SIGKILLed and started again: READY again; the
#               others keep running, log the restart and exchange with it
#   partition   a peer is disconnected from the network before it starts:
#               the others exit 124 at their timeout naming it missing
#   stop        `docker stop` of a READY peer: exit 143 in well under 3 s
#   classic     deploy/compose/classic/compose.yaml as written: all READY
#   job         a job behind rollcall --barrier in its own image
#               (deploy/compose/job): its compose.yaml as written, each peer
#               prints READY and its own line, exits 0; then staged: four
#               peers up print nothing; the fifth up but cut off from peer4,
#               so peer1..peer3 are READY and peer4, peer5 not: still no
#               job output; peer4 reconnected: every job starts after that,
#               prints its own index line and the full peer list, exits 0
#
# Environment: COMPOSE (the compose command; default docker-compose, or
# "docker compose" when there is no docker-compose), MAKE (default make),
# CI (true: an unreachable engine fails --auto), TMPDIR.
#
# Output: a PASS or FAIL line per scenario with what was measured, the
# container logs of a failing scenario, and a closing line
# `smoke: N passed, M failed`.
#
# Exit status: 0 if every scenario passed (or --auto skipped), 1 if one
# failed or the set-up failed, 2 on bad usage, 130/143 on SIGINT/SIGTERM.
# Every container, network and temporary file of the run is removed on any
# exit, and checked to be gone.
set -euo pipefail

prog=smoke
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
# The image that `make image` builds and that the classic compose file names.
image=rollcall:latest
classic_file=$root/deploy/compose/classic/compose.yaml
# The job's own image that `make job-image` builds, and its compose file.
job_image=rollcall-hello-job:latest
job_file=$root/deploy/compose/job/compose.yaml

all_scenarios=(ready late-start restart partition stop classic job)
declare -A title=(
	[ready]="five peers start together: READY once each, healthcheck healthy"
	[late-start]="four peers start, the fifth 10 s later: READY within a round trip"
	[restart]="a READY peer is killed and started again: READY again, the others answer"
	[partition]="a peer cut off its network: the others exit 124 naming it missing"
	[stop]="docker stop of a READY peer: exit 143, promptly"
	[classic]="the classic layout (deploy/compose/classic) as written: all READY"
	[job]="a job behind --barrier (deploy/compose/job): it runs once every peer is READY"
)

usage() {
	# The comment block from the usage line to the first line of code.
	awk '/^# usage:/ { on = 1 } on && !/^#/ { exit } on { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
}
die_usage() {
	printf '%s: %s (see %s --help)\n' "$prog" "$*" "$0" >&2
	exit 2
}

auto=0 build=0 cleanup_only=0
selected=()
while (($#)); do
	case $1 in
	--auto) auto=1 build=1 ;;
	--build) build=1 ;;
	--cleanup) cleanup_only=1 ;;
	--help) usage && exit 0 ;;
	-*) die_usage "unknown option '$1'" ;;
	*)
		[[ -n ${title[$1]:-} ]] || die_usage "unknown scenario '$1' (scenarios: ${all_scenarios[*]})"
		selected+=("$1")
		;;
	esac
	shift
done
if ((${#selected[@]} == 0)); then
	selected=("${all_scenarios[@]}")
else
	# Keep the documented order, whatever order they were given in.
	wanted=" ${selected[*]} "
	selected=()
	for s in "${all_scenarios[@]}"; do
		[[ $wanted == *" $s "* ]] && selected+=("$s")
	done
fi

# ---------------------------------------------------------------------------
# Small helpers.
# ---------------------------------------------------------------------------

# now_ms VAR: milliseconds since the epoch, without forking (bash 5).
now_ms() {
	local us=${EPOCHREALTIME//[.,]/}
	printf -v "$1" '%d' $((us / 1000))
}
# secs MS: seconds with one decimal.
secs() { printf '%d.%d' $(($1 / 1000)) $((($1 % 1000) / 100)); }

# The engine or the compose tool is missing: SKIPPED under --auto outside
# CI, a failure otherwise.
unavailable() {
	if ((auto)) && [[ ${CI:-} != true ]]; then
		printf '%s: SKIPPED: %s\n' "$prog" "$1"
		exit 0
	fi
	if [[ ${CI:-} == true ]]; then
		printf '%s: FAILED: %s; CI=true, where the container smoke tests must run\n' "$prog" "$1" >&2
	else
		printf '%s: FAILED: %s\n' "$prog" "$1" >&2
	fi
	exit 1
}
setup_failed() {
	printf '%s: FAILED: %s\n' "$prog" "$*" >&2
	exit 1
}

# bounded SECONDS CMD...: CMD, stopped (and failing) after SECONDS. timeout
# runs it in a process group of its own, so a Ctrl-C on the terminal does not
# cut a compose call in half: the teardown decides what happens then.
bounded() {
	local limit=$1
	shift
	timeout -k 5 "$limit" "$@"
}

# ---------------------------------------------------------------------------
# Preflight: engine, compose tool, image.
# ---------------------------------------------------------------------------
command -v timeout >/dev/null || setup_failed "timeout (coreutils) not found"
command -v docker >/dev/null || unavailable "no Docker engine reachable (docker: command not found)"
if ! info_err=$(bounded 30 docker info 2>&1 >/dev/null); then
	reason=$(grep -v '^[[:space:]]*$' <<<"$info_err" | tail -n 1 || true)
	unavailable "no Docker engine reachable (docker info: ${reason:-failed})"
fi

if [[ -n ${COMPOSE:-} ]]; then
	read -r -a compose_cmd <<<"$COMPOSE"
elif command -v docker-compose >/dev/null; then
	compose_cmd=(docker-compose)
else
	compose_cmd=(docker compose)
fi
if ! compose_version=$(bounded 30 "${compose_cmd[@]}" version --short 2>&1); then
	if [[ -z ${COMPOSE:-} ]]; then
		unavailable "no compose tool (neither docker-compose nor the docker compose plugin; or set COMPOSE)"
	fi
	unavailable "no compose tool (COMPOSE=$COMPOSE: version --short: $(grep -m 1 -v '^[[:space:]]*$' <<<"$compose_version" || true))"
fi

# Everything of this run carries this suffix: rcsmoke-SCENARIO-PID.
suffix=$$

# purge PROJECT: remove every container and network of a compose project,
# whatever state compose left them in.
purge() {
	local -a ids=() nets=()
	mapfile -t ids < <(docker ps -aq --filter "label=com.docker.compose.project=$1" 2>/dev/null)
	((${#ids[@]} == 0)) || bounded 60 docker rm -f -v "${ids[@]}" >/dev/null 2>&1 || true
	mapfile -t nets < <(docker network ls -q --filter "label=com.docker.compose.project=$1" 2>/dev/null)
	((${#nets[@]} == 0)) || bounded 60 docker network rm "${nets[@]}" >/dev/null 2>&1 || true
}

# leftovers [PID]: the compose projects rcsmoke-*[-PID] that still have a
# container or a network, one per line.
leftovers() {
	local pattern="^rcsmoke-[a-z-]+-${1:-[0-9]+}\$"
	{
		docker ps -a --filter label=com.docker.compose.project \
			--format '{{.Label "com.docker.compose.project"}}'
		docker network ls --filter label=com.docker.compose.project \
			--format '{{.Label "com.docker.compose.project"}}'
	} | grep -E -- "$pattern" | sort -u || true
}

if ((cleanup_only)); then
	mapfile -t stale < <(leftovers)
	for p in "${stale[@]}"; do
		printf '%s: removing %s\n' "$prog" "$p"
		purge "$p"
	done
	mapfile -t stale < <(leftovers)
	((${#stale[@]} == 0)) || setup_failed "could not remove: ${stale[*]}"
	printf '%s: nothing of rcsmoke-* left\n' "$prog"
	exit 0
fi

[[ -f $classic_file ]] || setup_failed "$classic_file: not found"
[[ -f $job_file ]] || setup_failed "$job_file: not found"

# The scenario job needs the job's image too; `make job-image` builds both.
with_job=0
[[ " ${selected[*]} " != *" job "* ]] || with_job=1
target=image
((!with_job)) || target=job-image
if ((build)); then
	printf '%s: building the images (%s -C %s %s)\n' "$prog" "${MAKE:-make}" "$root" "$target"
	"${MAKE:-make}" -C "$root" "$target" || setup_failed "'${MAKE:-make} -C $root $target' failed"
fi
image_id=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null) ||
	setup_failed "no image $image: build it with 'make image' (or run with --build)"
image_size=$(docker image inspect -f '{{.Size}}' "$image")
images="$image (${image_id:7:12}, $((image_size / 1000)) kB)"
if ((with_job)); then
	job_image_id=$(docker image inspect -f '{{.Id}}' "$job_image" 2>/dev/null) ||
		setup_failed "no image $job_image: build it with 'make job-image' (or run with --build)"
	job_image_size=$(docker image inspect -f '{{.Size}}' "$job_image")
	images+=", $job_image (${job_image_id:7:12}, $((job_image_size / 1000)) kB)"
fi

# ---------------------------------------------------------------------------
# The run: a scenario at a time, each in a subshell of its own that tears
# its project down on any exit.
# ---------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/rcsmoke.XXXXXX")
current=""    # pid of the running scenario's subshell
current_name=""
passed=0 failed=0

# shellcheck disable=SC2317  # reached through the traps below
main_exit() {
	local rc=$? p
	trap '' INT TERM
	if [[ -n $current ]]; then
		# The scenario tears its project down on SIGTERM; wait until it has.
		kill -TERM "$current" 2>/dev/null || true
		wait "$current" 2>/dev/null || true
	fi
	# Anything a scenario could not remove (or that was started while it
	# was being killed) goes now.
	for p in $(leftovers "$suffix"); do
		purge "$p"
	done
	rm -rf -- "$work"
	if [[ -n $(leftovers "$suffix") ]]; then
		printf '%s: FAILED: left behind: %s\n' "$prog" "$(leftovers "$suffix" | tr '\n' ' ')" >&2
		((rc != 0)) || rc=1
	fi
	exit "$rc"
}
# shellcheck disable=SC2317
interrupted() {
	printf '\n%s: %s%s; tearing down\n' "$prog" "$1" "${current_name:+ during $current_name}" >&2
	printf '%s: interrupted: %d passed, %d failed before %s\n' "$prog" "$passed" "$failed" "$1" >&2
	exit "$2"
}
trap main_exit EXIT
trap 'interrupted SIGINT 130' INT
trap 'interrupted SIGTERM 143' TERM

# --- inside a scenario's subshell ------------------------------------------

project="" sdir="" compose_file="" note_file=""
declare -A C=()   # service -> container id
declare -a problems=()
peers=(peer1 peer2 peer3 peer4 peer5)

compose() {
	bounded 120 "${compose_cmd[@]}" -p "$project" -f "$compose_file" "$@"
}

# quietly CMD...: run CMD with its output kept; show the output if it fails.
quietly() {
	local out line rc=0
	out=$("$@" 2>&1) || rc=$?
	if ((rc != 0)); then
		printf '  ! %s: exit status %d:\n' "$*" "$rc"
		while IFS= read -r line; do
			printf '    %s\n' "$line"
		done <<<"$out"
	fi
	return "$rc"
}

# note TEXT: the scenario's one-line result (PASS detail or FAIL reason).
note() { printf '%s\n' "$*" >"$note_file"; }
# problem TEXT: a failed check; the scenario goes on checking, and fails at
# the next checkpoint.
problem() {
	printf '  ! %s\n' "$*"
	problems+=("$*")
}
checkpoint() {
	((${#problems[@]} == 0)) && return 0
	if ((${#problems[@]} == 1)); then
		note "${problems[0]}"
	else
		note "${problems[0]} (and $((${#problems[@]} - 1)) more)"
	fi
	exit 1
}
# fail TEXT: a failed check that ends the scenario now.
fail() {
	problem "$*"
	checkpoint
}
info() { printf '  %s\n' "$*"; }

# pause SECONDS: sleep, in a way that a SIGTERM interrupts at once.
sleeper=""
pause() {
	sleep "$1" &
	sleeper=$!
	wait "$sleeper"
	sleeper=""
}

# collect SERVICE...: record the container id of each service.
collect() {
	local s ids
	for s in "$@"; do
		ids=$(docker ps -aq --filter "label=com.docker.compose.project=$project" \
			--filter "label=com.docker.compose.service=$s")
		[[ -n $ids && $ids != *$'\n'* ]] || fail "expected one container for service $s, found: '${ids//$'\n'/ }'"
		C[$s]=$ids
	done
}

# wait_for SECONDS WHAT PREDICATE ARGS...: poll PREDICATE every 0.15 s until
# it succeeds (0); fail after SECONDS, or at once if it returns 2 (it can no
# longer succeed; it says why in $why).
why=""
wait_for() {
	local limit=$1 what=$2 rc=0
	shift 2
	poll "$limit" "$@" || rc=$?
	((rc == 0)) && return 0
	((rc != 2)) || fail "$what: ${why:-gave up}"
	fail "$what: not within ${limit}s${why:+ ($why)}"
}
# poll SECONDS PREDICATE ARGS...: the same, returning 1 (not within SECONDS)
# or 2 (PREDICATE gave up) instead of failing.
poll() {
	local limit=$1 start now rc
	shift
	now_ms start
	while :; do
		rc=0
		why=""
		"$@" || rc=$?
		((rc == 0 || rc == 2)) && return "$rc"
		now_ms now
		((now - start < limit * 1000)) || return 1
		sleep 0.15
	done
}

stdout_of() { docker logs "$1" 2>/dev/null; }
# shellcheck disable=SC2069  # stderr alone, on purpose
stderr_of() { docker logs "$1" 2>&1 >/dev/null; }

# ready_count ID: the number of lines `READY` on the container's stdout.
ready_count() {
	local out
	out=$(stdout_of "$1") || return 1
	grep -cx READY <<<"$out" || true
}

# all_ready N SERVICE...: every service has printed READY at least N times.
# Gives up (2) when a container has stopped before that.
all_ready() {
	local n=$1 s count running
	shift
	for s in "$@"; do
		count=$(ready_count "${C[$s]}") || return 1
		if ((count < n)); then
			running=$(docker inspect -f '{{.State.Running}}' "${C[$s]}") || return 1
			if [[ $running != true ]]; then
				why="$s stopped (exit code $(docker inspect -f '{{.State.ExitCode}}' "${C[$s]}")) after $count READY line(s)"
				return 2
			fi
			why="$s: $count READY line(s)"
			return 1
		fi
	done
}

# all_healthy SERVICE...: every container's healthcheck says healthy.
all_healthy() {
	local s status
	for s in "$@"; do
		status=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "${C[$s]}") || return 1
		if [[ $status != healthy ]]; then
			why="$s is $status"
			[[ $status != none ]] || return 2
			return 1
		fi
	done
}

# all_exited SERVICE...: no container of these is running.
all_exited() {
	local s running
	for s in "$@"; do
		running=$(docker inspect -f '{{.State.Running}}' "${C[$s]}") || return 1
		if [[ $running == true ]]; then
			why="$s still running"
			return 1
		fi
	done
}

# has_logged ID ERE: a stderr line matches ERE. (No `docker logs | grep -q`:
# grep leaving early is a SIGPIPE for docker logs, a failure under pipefail.)
has_logged() {
	local log
	log=$(stderr_of "$1") || return 1
	grep -Eq -- "$2" <<<"$log"
}

# log_ms ID ERE [NTH]: milliseconds since the epoch of the NTH (default
# first) stderr line matching ERE, from its RFC 3339 timestamp.
log_ms() {
	local line ts
	line=$(stderr_of "$1" | grep -E -- "$2" | sed -n "${3:-1}p")
	ts=${line%% *}
	[[ $ts =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$ ]] || return 1
	date -u -d "$ts" +%s%3N
}
# docker_ms TIMESTAMP: milliseconds since the epoch of a docker inspect time.
docker_ms() { date -u -d "$1" +%s%3N; }

# write_compose NAME=VALUE...: compose.yaml with peer1..peer5 of the image on
# one network, finding their entries in hosts by hostname; NAME=VALUE is
# their environment. The healthcheck is the image's. With with_filler=1, also
# a service `filler`: a rollcall of its own (hosts file: filler alone) on the
# same network, not a peer, started only to take up an address.
with_filler=0
write_compose() {
	local s kv
	printf '%s\n' "${peers[@]}" >"$sdir/hosts"
	printf 'filler\n' >"$sdir/filler-hosts"
	chmod 0644 "$sdir/hosts" "$sdir/filler-hosts"
	{
		printf '# rollcall smoke test %s, generated by scripts/smoke.sh\nservices:\n' "$project"
		for s in "${peers[@]}" filler; do
			[[ $s != filler ]] || ((with_filler)) || continue
			printf '  %s:\n    image: %s\n    hostname: %s\n    networks: [smoke]\n' "$s" "$image" "$s"
			if [[ $s == filler ]]; then
				printf '    volumes: ["./filler-hosts:/etc/rollcall/hosts:ro"]\n    environment:\n'
			else
				printf '    volumes: ["./hosts:/etc/rollcall/hosts:ro"]\n    environment:\n'
			fi
			for kv in "$@"; do
				printf '      %s: "%s"\n' "${kv%%=*}" "${kv#*=}"
			done
		done
		printf 'networks:\n  smoke: {}\n'
	} >"$sdir/compose.yaml"
	compose_file=$sdir/compose.yaml
}

# check_ready_once SERVICE...: stdout is exactly one line, READY.
check_ready_once() {
	local s out
	for s in "$@"; do
		out=$(stdout_of "${C[$s]}")
		[[ $out == READY ]] || problem "$s: stdout should be exactly one line READY, is: $(printf '%q' "$out")"
	done
}

# dump_logs: state and output of every container of the project.
dump_logs() {
	local svc id
	printf '  --- containers of %s ---\n' "$project"
	while read -r svc id; do
		[[ -n $id ]] || continue
		printf '  %s: %s\n' "$svc" "$(docker inspect -f '{{.State.Status}}, exit code {{.State.ExitCode}}, restarts {{.RestartCount}}, started {{.State.StartedAt}}, health {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}}, networks {{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}' "$id" 2>&1)"
		docker logs "$id" 2>/dev/null | sed 's/^/    out| /' || true
		stderr_of "$id" | sed 's/^/    err| /' || true
	done < <(docker ps -a --filter "label=com.docker.compose.project=$project" \
		--format '{{.Label "com.docker.compose.service"}} {{.ID}}' | sort)
	printf '  --- end of %s ---\n' "$project"
}

# shellcheck disable=SC2317  # reached through the traps in run_in_subshell
scenario_exit() {
	local rc=$?
	trap '' INT TERM
	[[ -z $sleeper ]] || kill "$sleeper" 2>/dev/null || true
	if ((rc == 130 || rc == 143)); then
		printf '  ! interrupted (%s): tearing %s down\n' "$( ((rc == 130)) && echo SIGINT || echo SIGTERM)" "$project"
	elif ((rc != 0)); then
		[[ -s $note_file ]] || note "stopped by an unexpected failure (exit status $rc; see above)"
		dump_logs
	fi
	if [[ -n $compose_file ]]; then
		quietly compose down -v --remove-orphans -t 1 || true
	fi
	purge "$project"
	rm -rf -- "$sdir"
	exit "$rc"
}
# shellcheck disable=SC2317
unexpected() {
	# Report once, from the scenario's own shell (not from each $(...)).
	((BASH_SUBSHELL == scenario_level)) || return 0
	printf '  ! unexpected failure (exit status %d) at line %d: %s\n' "$1" "$2" "$3"
}

scenario_level=0
run_in_subshell() {
	local name=$1
	project=rcsmoke-$name-$suffix
	sdir=$work/$name
	note_file=$work/$name.note
	mkdir -p -- "$sdir"
	scenario_level=$BASH_SUBSHELL
	set -E
	trap 'unexpected $? $LINENO "$BASH_COMMAND"' ERR
	trap scenario_exit EXIT
	trap 'trap "" INT TERM; exit 130' INT
	trap 'trap "" INT TERM; exit 143' TERM
	"scenario_${name//-/_}"
}

# ---------------------------------------------------------------------------
# The scenarios. Each ends with a note (its PASS line's detail) or fails.
# ---------------------------------------------------------------------------

scenario_ready() {
	local t0 t_ready t_healthy s last_start=0 last_ready=0 t
	write_compose ROLLCALL_TIMEOUT=60s ROLLCALL_INTERVAL=500ms
	now_ms t0
	quietly compose up -d || fail "docker-compose up failed"
	collect "${peers[@]}"
	wait_for 30 "every peer READY" all_ready 1 "${peers[@]}"
	now_ms t_ready
	wait_for 30 "every healthcheck healthy" all_healthy "${peers[@]}"
	now_ms t_healthy
	check_ready_once "${peers[@]}"
	for s in "${peers[@]}"; do
		t=$(log_ms "${C[$s]}" " INFO +rollcall $s \\(peer [0-9]+ of 5\\) bound to ") ||
			{ problem "$s: no start line on stderr"; continue; }
		((t < last_start)) || last_start=$t
		t=$(log_ms "${C[$s]}" ' INFO +READY after ') || { problem "$s: no 'READY after' line on stderr"; continue; }
		((t < last_ready)) || last_ready=$t
	done
	checkpoint
	note "5/5 READY once on stdout $(secs $((t_ready - t0)))s after up (last start line to last READY line $((last_ready - last_start)) ms), 5/5 healthy after $(secs $((t_healthy - t0)))s"
}

scenario_late_start() {
	local first=(peer1 peer2 peer3 peer4) s t t5 d min=-1 max=-1 d5 count
	write_compose ROLLCALL_TIMEOUT=60s ROLLCALL_INTERVAL=500ms
	quietly compose up -d --no-deps "${first[@]}" || fail "docker-compose up of peer1..peer4 failed"
	collect "${first[@]}"
	info "peer1..peer4 up; peer5 starts in 10 s"
	# The 10 s delay is the scenario.
	pause 10
	for s in "${first[@]}"; do
		has_logged "${C[$s]}" " INFO +rollcall $s " || problem "$s: no start line after 10 s"
		count=$(ready_count "${C[$s]}")
		((count == 0)) || problem "$s: printed READY before peer5 started"
	done
	checkpoint
	quietly compose up -d --no-deps peer5 || fail "docker-compose up of peer5 failed"
	collect peer5
	wait_for 20 "all five READY after peer5 started" all_ready 1 "${peers[@]}"
	check_ready_once "${peers[@]}"
	t5=$(log_ms "${C[peer5]}" ' INFO +rollcall peer5 \(peer 5 of 5\) bound to ') ||
		fail "peer5: no start line 'rollcall peer5 (peer 5 of 5) bound to' on stderr"
	for s in "${first[@]}"; do
		t=$(log_ms "${C[$s]}" ' INFO +READY after ') || { problem "$s: no 'READY after' line on stderr"; continue; }
		d=$((t - t5))
		info "$s READY ${d} ms after peer5's start line"
		if ((d < 0)); then
			problem "$s: READY ${d#-} ms before peer5's start line"
		elif ((d > 1000)); then
			problem "$s: READY ${d} ms after peer5's start line (bound: 1000 ms)"
		fi
		((min >= 0 && min <= d)) || min=$d
		((max >= d)) || max=$d
	done
	t=$(log_ms "${C[peer5]}" ' INFO +READY after ') || fail "peer5: no 'READY after' line on stderr"
	d5=$((t - t5))
	checkpoint
	note "peer1..peer4 READY ${min}..${max} ms after peer5's start line (bound 1000 ms), peer5 itself after ${d5} ms"
}

scenario_restart() {
	local victim=peer3 others=(peer1 peer2 peer4 peer5) s ip_before ip_after t_start t_ready count
	local -A started=()
	with_filler=1
	write_compose ROLLCALL_TIMEOUT=60s ROLLCALL_INTERVAL=500ms
	quietly compose up -d "${peers[@]}" || fail "docker-compose up failed"
	collect "${peers[@]}"
	wait_for 30 "every peer READY" all_ready 1 "${peers[@]}"
	for s in "${others[@]}"; do
		started[$s]=$(docker inspect -f '{{.State.StartedAt}}' "${C[$s]}")
	done
	ip_before=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "${C[$victim]}")

	quietly docker kill "${C[$victim]}" || fail "docker kill $victim failed"
	wait_for 10 "$victim to be killed" all_exited "$victim"
	# A restarted container can come back with another address: make sure
	# it does, by letting another container take up the one it had.
	quietly compose up -d --no-deps filler || fail "docker-compose up of filler failed"
	collect filler
	info "$victim killed (exit code $(docker inspect -f '{{.State.ExitCode}}' "${C[$victim]}")) at $ip_before; filler took $(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "${C[filler]}"); starting $victim again"
	quietly docker start "${C[$victim]}" || fail "docker start $victim failed"
	ip_after=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "${C[$victim]}")
	[[ $ip_after != "$ip_before" ]] || fail "set-up: $victim came back at its old address $ip_before; the move is not exercised"
	wait_for 20 "$victim READY again after its restart" all_ready 2 "$victim"

	# READY again: its second start line and second READY line.
	t_start=$(log_ms "${C[$victim]}" " INFO +rollcall $victim " 2) || problem "$victim: no second start line"
	t_ready=$(log_ms "${C[$victim]}" ' INFO +READY after ' 2) || problem "$victim: no second 'READY after' line"
	count=$(ready_count "${C[$victim]}")
	((count == 2)) || problem "$victim: $count READY lines on stdout across its two runs, expected 2"

	# The others: still running, never restarted, READY once, and they logged
	# the restart and exchanged with the new incarnation.
	wait_for 5 "the others to log that $victim restarted" others_saw_restart "$victim" "${others[@]}"
	for s in "${others[@]}"; do
		[[ $(docker inspect -f '{{.State.Running}} {{.RestartCount}} {{.State.StartedAt}}' "${C[$s]}") == "true 0 ${started[$s]}" ]] ||
			problem "$s: no longer the same running container: $(docker inspect -f 'running {{.State.Running}}, restarts {{.RestartCount}}, started {{.State.StartedAt}} (was '"${started[$s]}"')' "${C[$s]}")"
		count=$(ready_count "${C[$s]}")
		((count == 1)) || problem "$s: $count READY lines on stdout, expected 1"
	done
	checkpoint
	note "$victim READY again $((t_ready - t_start)) ms after its restart at a new address ($ip_before -> $ip_after); 4/4 others kept running, logged '$victim restarted' and exchanged with it"
}

# others_saw_restart VICTIM SERVICE...: each logged VICTIM's restart, and an
# exchange with VICTIM after it.
others_saw_restart() {
	local victim=$1 s log after
	shift
	for s in "$@"; do
		log=$(stderr_of "${C[$s]}") || return 1
		if ! grep -q -- "$victim restarted" <<<"$log"; then
			why="$s did not log '$victim restarted'"
			return 1
		fi
		after=$(sed -n "/$victim restarted/,\$p" <<<"$log")
		if ! grep -q -- "exchanged with $victim " <<<"$after"; then
			why="$s logged no exchange with $victim after its restart"
			return 1
		fi
	done
}

scenario_partition() {
	local victim=peer5 others=(peer1 peer2 peer3 peer4) s net nets code log ran min=-1 max=-1 count t_started t_finished
	write_compose ROLLCALL_TIMEOUT=8s ROLLCALL_INTERVAL=500ms
	quietly compose up --no-start || fail "docker-compose up --no-start failed"
	collect "${peers[@]}"
	net=$(docker network ls -q --filter "label=com.docker.compose.project=$project")
	[[ -n $net && $net != *$'\n'* ]] || fail "expected one network of $project, found: '${net//$'\n'/ }'"
	quietly docker network disconnect "$net" "${C[$victim]}" || fail "docker network disconnect $victim failed"
	nets=$(docker inspect -f '{{len .NetworkSettings.Networks}}' "${C[$victim]}")
	((nets == 0)) || fail "$victim still has $nets network(s) after the disconnect"
	info "$victim disconnected from its network; starting all five with ROLLCALL_TIMEOUT=8s"
	quietly docker start "${C[@]}" || fail "docker start failed"
	wait_for 30 "peer1..peer4 to exit at their 8 s timeout" all_exited "${others[@]}"
	for s in "${others[@]}"; do
		code=$(docker inspect -f '{{.State.ExitCode}}' "${C[$s]}")
		((code == 124)) || problem "$s: exit code $code, expected 124"
		log=$(stderr_of "${C[$s]}")
		grep -Eq -- "missing $victim:" <<<"$log" || problem "$s: does not name $victim as missing ('missing $victim: ...')"
		if grep -Eq -- 'missing peer[1-4]:' <<<"$log"; then
			problem "$s: names another peer missing: $(grep -E -- 'missing peer[1-4]:' <<<"$log" | tr '\n' ' ')"
		fi
		count=$(ready_count "${C[$s]}")
		((count == 0)) || problem "$s: printed READY although $victim was cut off"
		read -r t_started t_finished < <(docker inspect -f '{{.State.StartedAt}} {{.State.FinishedAt}}' "${C[$s]}")
		ran=$(($(docker_ms "$t_finished") - $(docker_ms "$t_started")))
		((min >= 0 && min <= ran)) || min=$ran
		((max >= ran)) || max=$ran
		# At the timeout: not early, and not long after it.
		((ran >= 7500 && ran <= 12000)) || problem "$s: ran $(secs "$ran")s, expected to exit at its 8s timeout"
	done
	# The cut-off peer is not what the scenario checks; say what it did.
	poll 10 all_exited "$victim" || true
	info "$victim (cut off): exit code $(docker inspect -f '{{.State.ExitCode}}' "${C[$victim]}"), READY lines $(ready_count "${C[$victim]}"), $(stderr_of "${C[$victim]}" | grep -c 'missing peer' || true) peers named missing"
	checkpoint
	note "peer1..peer4 exited 124 after $(secs "$min")..$(secs "$max")s (timeout 8s), each naming $victim (only) missing"
}

scenario_stop() {
	local victim=peer2 t0 t1 code running
	write_compose ROLLCALL_TIMEOUT=60s ROLLCALL_INTERVAL=500ms
	quietly compose up -d || fail "docker-compose up failed"
	collect "${peers[@]}"
	wait_for 30 "every peer READY" all_ready 1 "${peers[@]}"
	now_ms t0
	quietly docker stop -t 10 "${C[$victim]}" || fail "docker stop $victim failed"
	now_ms t1
	read -r running code < <(docker inspect -f '{{.State.Running}} {{.State.ExitCode}}' "${C[$victim]}")
	info "docker stop -t 10 $victim returned in $((t1 - t0)) ms; exit code $code"
	[[ $running == false ]] || problem "$victim still running after docker stop"
	((code == 143)) || problem "$victim: exit code $code after docker stop, expected 143 (SIGTERM)"
	((t1 - t0 < 3000)) || problem "docker stop took $((t1 - t0)) ms (bound: 3000 ms; rollcall should exit at once on SIGTERM)"
	checkpoint
	note "docker stop -t 10 $victim returned in $((t1 - t0)) ms (bound 3000 ms), exit code 143"
}

scenario_classic() {
	local t0 t1
	compose_file=$classic_file
	now_ms t0
	quietly compose up -d || fail "docker-compose -f deploy/compose/classic/compose.yaml up failed"
	collect "${peers[@]}"
	wait_for 30 "every peer READY" all_ready 1 "${peers[@]}"
	now_ms t1
	check_ready_once "${peers[@]}"
	checkpoint
	note "5/5 READY once on stdout $(secs $((t1 - t0)))s after up (project $project, -f ${classic_file#"$root"/})"
}

# The scenario job: rollcall in front of a job in the job's own image
# (deploy/compose/job), each peer's job the example hello-job, which prints
# `peer I of 5 (peerI): peer1,...,peer5` from the variables rollcall sets.

# job_stdout SERVICE: what the service's stdout must be once its job ran:
# rollcall's READY, then the job's one line.
job_stdout() {
	local i
	for i in "${!peers[@]}"; do
		if [[ ${peers[i]} == "$1" ]]; then
			printf 'READY\npeer %d of %d (%s): %s' $((i + 1)) "${#peers[@]}" "$1" "$(
				IFS=,
				echo "${peers[*]}"
			)"
			return 0
		fi
	done
	return 1
}

# job_done SERVICE: its container has stopped (0), or still runs (1), or
# stopped otherwise than with exit code 0 and READY and the job's own line on
# stdout (2; $why says how).
job_done() {
	local s=$1 running code out want
	read -r running code < <(docker inspect -f '{{.State.Running}} {{.State.ExitCode}}' "${C[$s]}") || return 1
	if [[ $running == true ]]; then
		why="$s still running"
		return 1
	fi
	out=$(stdout_of "${C[$s]}") || return 1
	want=$(job_stdout "$s")
	if [[ $out != "$want" ]]; then
		why="$s: stdout should be $(printf '%q' "$want"), is: $(printf '%q' "$out") (exit code $code)"
		return 2
	fi
	if ((code != 0)); then
		why="$s: exit code $code, expected 0 (the job's own)"
		return 2
	fi
}
# jobs_done SERVICE...: job_done for each: 0 when all are, 2 as soon as one
# went wrong, else 1.
jobs_done() {
	local s rc pending=""
	for s in "$@"; do
		rc=0
		job_done "$s" || rc=$?
		((rc != 2)) || return 2
		((rc == 0)) || pending=${pending:-$why}
	done
	why=$pending
	[[ -z $pending ]]
}

# check_stdout TEXT SERVICE...: each service's stdout is exactly TEXT.
check_stdout() {
	local want=$1 s out
	shift
	for s in "$@"; do
		out=$(stdout_of "${C[$s]}")
		[[ $out == "$want" ]] ||
			problem "$s: stdout should be $(printf '%q' "$want") here, is: $(printf '%q' "$out")"
	done
}

# exchanged WITH SERVICE...: each service has logged its exchange with each
# of WITH (a space-separated list), itself aside. Gives up (2) when one has
# stopped.
exchanged() {
	local with=$1 s o log
	shift
	for s in "$@"; do
		log=$(stderr_of "${C[$s]}") || return 1
		for o in $with; do
			[[ $o != "$s" ]] || continue
			if ! grep -q -- "exchanged with $o " <<<"$log"; then
				why="$s has not exchanged with $o"
				[[ $(docker inspect -f '{{.State.Running}}' "${C[$s]}") == true ]] || {
					why="$s stopped (exit code $(docker inspect -f '{{.State.ExitCode}}' "${C[$s]}")) before exchanging with $o"
					return 2
				}
				return 1
			fi
		done
	done
}

# write_job_compose NAME=VALUE...: compose.yaml with peer1..peer5 of the
# job's image on two networks, `left` and `right`: peer1..peer3 on both,
# peer4 on left alone, peer5 on right alone, so that peer4 and peer5
# cannot reach each other while every other pair can.
write_job_compose() {
	local s kv nets
	printf '%s\n' "${peers[@]}" >"$sdir/hosts"
	chmod 0644 "$sdir/hosts"
	{
		printf '# rollcall smoke test %s, generated by scripts/smoke.sh\nservices:\n' "$project"
		for s in "${peers[@]}"; do
			case $s in
			peer4) nets=left ;;
			peer5) nets=right ;;
			*) nets="left, right" ;;
			esac
			printf '  %s:\n    image: %s\n    hostname: %s\n    networks: [%s]\n' "$s" "$job_image" "$s" "$nets"
			printf '    volumes: ["./hosts:/etc/rollcall/hosts:ro"]\n    environment:\n'
			for kv in "$@"; do
				printf '      %s: "%s"\n' "${kv%%=*}" "${kv#*=}"
			done
		done
		printf 'networks:\n  left: {}\n  right: {}\n'
	} >"$sdir/compose.yaml"
	compose_file=$sdir/compose.yaml
}

scenario_job() {
	local first=(peer1 peer2 peer3 peer4) bridged=(peer1 peer2 peer3) cut=(peer4 peer5)
	local t0 t1 t_heal t s right min=-1 max=-1 hold=3 written
	# 1. The example as written: every peer prints READY, then its line.
	compose_file=$job_file
	now_ms t0
	quietly compose up -d || fail "docker-compose -f deploy/compose/job/compose.yaml up failed"
	collect "${peers[@]}"
	wait_for 30 "every peer's job to run and exit 0 (deploy/compose/job as written)" jobs_done "${peers[@]}"
	now_ms t1
	written="deploy/compose/job as written: 5/5 printed READY and their own line, exit 0, $(secs $((t1 - t0)))s after up"
	info "$written"
	quietly compose down -v --remove-orphans -t 1 || fail "docker-compose down of deploy/compose/job failed"
	C=()

	# 2. Staged, in a compose file of the scenario's own (the image's
	# settings, ROLLCALL_BARRIER=1 among them, as they are).
	write_job_compose ROLLCALL_TIMEOUT=60s ROLLCALL_INTERVAL=500ms
	quietly compose up -d --no-deps "${first[@]}" || fail "docker-compose up of peer1..peer4 failed"
	collect "${first[@]}"
	wait_for 20 "peer1..peer4 to exchange with each other" exchanged "${first[*]}" "${first[@]}"
	check_stdout "" "${first[@]}"
	checkpoint
	info "peer1..peer4 up and exchanging, no output on stdout; starting peer5, which cannot reach peer4"

	quietly compose up -d --no-deps peer5 || fail "docker-compose up of peer5 failed"
	collect peer5
	wait_for 20 "peer1..peer3 READY once peer5 started" all_ready 1 "${bridged[@]}"
	wait_for 10 "peer5 to exchange with peer1..peer3" exchanged "${bridged[*]}" peer5
	# Several intervals in which a job started at its own peer's READY
	# would have printed.
	pause "$hold"
	for s in "${peers[@]}"; do
		[[ $(docker inspect -f '{{.State.Running}}' "${C[$s]}") == true ]] ||
			problem "$s: stopped (exit code $(docker inspect -f '{{.State.ExitCode}}' "${C[$s]}")) while peer4 and peer5 could not reach each other"
	done
	for s in "${cut[@]}"; do
		! has_logged "${C[$s]}" "exchanged with peer[45] " ||
			fail "set-up: $s exchanged with $([[ $s == peer4 ]] && echo peer5 || echo peer4) through networks that should keep them apart"
	done
	check_stdout READY "${bridged[@]}"
	check_stdout "" "${cut[@]}"
	checkpoint
	info "peer1..peer3 READY, peer4 and peer5 not: no job output in ${hold}s; connecting peer4 to peer5's network"

	# 3. Healed: peer4 joins peer5's network, under its service name.
	right=$(docker network ls -q --filter "label=com.docker.compose.project=$project" \
		--filter "label=com.docker.compose.network=right")
	[[ -n $right && $right != *$'\n'* ]] || fail "expected one network 'right' of $project, found: '${right//$'\n'/ }'"
	now_ms t_heal
	quietly docker network connect --alias peer4 "$right" "${C[peer4]}" ||
		fail "docker network connect peer4 failed"
	wait_for 30 "every peer's job to run and exit 0 after peer4 joined peer5's network" jobs_done "${peers[@]}"
	for s in "${peers[@]}"; do
		t=$(log_ms "${C[$s]}" ' INFO +started hello-job ') || { problem "$s: no 'started hello-job' line on stderr"; continue; }
		t=$((t - t_heal))
		((t >= 0)) || problem "$s: its job started ${t#-} ms before peer4 could reach peer5"
		((min >= 0 && min <= t)) || min=$t
		((max >= t)) || max=$t
	done
	checkpoint
	note "$written; staged: peer1..peer4 up, then peer1..peer3 READY with peer4 and peer5 apart: no job output; reconnected: 5/5 jobs started ${min}..${max} ms after, printed their own line, exit 0"
}

# ---------------------------------------------------------------------------

printf '%s: %s, %s %s, Docker engine %s; scenarios: %s\n' "$prog" "$images" \
	"${compose_cmd[*]}" "$compose_version" \
	"$(docker version -f '{{.Server.Version}}' 2>/dev/null || echo '?')" "${selected[*]}"
run_started=$SECONDS
n=0 t_begin=0 t_end=0
for name in "${selected[@]}"; do
	n=$((n + 1))
	printf '%s: [%d/%d] %s: %s (project rcsmoke-%s-%s)\n' "$prog" "$n" "${#selected[@]}" \
		"$name" "${title[$name]}" "$name" "$suffix"
	now_ms t_begin
	current_name=$name
	run_in_subshell "$name" &
	current=$!
	rc=0
	wait "$current" || rc=$?
	current="" current_name=""
	now_ms t_end
	detail=""
	[[ ! -s $work/$name.note ]] || detail=$(<"$work/$name.note")
	if ((rc == 0)) && [[ -n $detail ]]; then
		passed=$((passed + 1))
		printf 'PASS %s (%ss): %s\n' "$name" "$(secs $((t_end - t_begin)))" "$detail"
	else
		failed=$((failed + 1))
		printf 'FAIL %s (%ss): %s\n' "$name" "$(secs $((t_end - t_begin)))" "${detail:-no result (exit status $rc)}"
	fi
done

mapfile -t left < <(leftovers "$suffix")
if ((${#left[@]})); then
	printf '%s: left behind by the scenarios (removing): %s\n' "$prog" "${left[*]}" >&2
	failed=$((failed + 1))
fi
printf '%s: all scenarios took %ds\n' "$prog" $((SECONDS - run_started))
printf '%s: %d passed, %d failed\n' "$prog" "$passed" "$failed"
((failed == 0))
