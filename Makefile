# rollcall: the verbs a newcomer needs. `make` (or `make help`) lists them.
#
# Variables (set on the command line, e.g. `make cluster N=16 ARGS="--interval 500ms"`):
#   N           peers for `make cluster` (default 5)
#   ARGS        extra rollcall arguments for every peer of `make cluster`
#   HOLD=1      `make cluster` keeps the peers running after READY until Ctrl-C
#               or until their own --timeout runs out (120s by default;
#               ARGS="-t 1h" keeps them an hour)
#   WAIT, BASE_PORT, ROLLCALL_BIN  also reach scripts/cluster.sh (see its header)
#   BENCH_ARGS  extra arguments for scripts/bench.py, e.g. BENCH_ARGS="--runs 3 --sizes 2,5"
#               or BENCH_ARGS="--systems rollcall,floor --scenarios start,loss"
#   QUICK=1     `make bench` in under two minutes: 3 runs, 2/16/64 peers, one loss case
#   SIM_PEERS   the simulator's sizes in `make bench` (default 1000), e.g. SIM_PEERS=1000,10000
#               (10 000 needs about 21 GB of memory and runs for tens of minutes)
#   SMOKE       scenarios for `make smoke` (scripts/smoke.sh --help), e.g. SMOKE="restart stop"; default all
#   SECONDS     how long `make soak` (default 600) and `make fuzz` (default 60) run
#   TARGET      the fuzz target of `make fuzz`: decode (default) or hosts
#   IMAGE       the image `make image` builds (default rollcall:latest; the
#               compose files and deploy/k8s name rollcall:latest)
#   JOB_IMAGE   the image `make job-image` builds (default
#               rollcall-hello-job:latest, which deploy/compose/job names)

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO   ?= cargo
PYTHON  ?= python3
N       ?= 5
BENCH_ARGS ?=
QUICK   ?=
# The yardstick peers of `make bench` (bench/classic.c), built with gcc -O2.
BENCH_CC     ?= gcc
BENCH_CFLAGS ?= -O2 -Wall -Wextra
CLASSIC_BIN  := target/bench/classic
SMOKE   ?=
# The offline Kubernetes schema validator (PyPI; ships the schemas).
K8S_VALIDATE := kubernetes-validate==1.37.0

RELEASE_BIN := target/release/rollcall
SCRIPTS_SH  := scripts/cluster.sh scripts/validate-k8s.sh scripts/smoke.sh .ci/run

.PHONY: help build test lint fmt cluster bench soak fuzz k8s-validate clean

help: ## list the targets (default)
	@echo "usage: make TARGET [N=5] [ARGS='--interval 500ms'] [HOLD=1] [BENCH_ARGS='--runs 3'] [SECONDS=60] [TARGET=hosts] [SMOKE='restart stop']"
	@echo
	@awk 'BEGIN { FS = ":.*## " } /^[a-z][a-z0-9_-]*:.*## / { printf "  %-13s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

build: ## build the release binary (target/release/rollcall)
	$(CARGO) build --release

test: ## the whole suite: cargo test (with the simulator), a real cluster run, the k8s manifests, the container smoke tests
	$(CARGO) test
	$(CARGO) build --release
	N=5 HOLD=0 ARGS= scripts/cluster.sh
	$(PYTHON) -c 'import kubernetes_validate' 2>/dev/null || $(PYTHON) -m pip install --quiet '$(K8S_VALIDATE)'
	PYTHON=$(PYTHON) scripts/validate-k8s.sh
	MAKE='$(MAKE)' scripts/smoke.sh --auto

lint: ## rustfmt check, clippy and rustdoc with warnings as errors, shell/python syntax checks
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --document-private-items --quiet
	for f in $(SCRIPTS_SH); do bash -n "$$f"; done
	$(PYTHON) -c 'import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])' scripts/bench.py
	if command -v shellcheck >/dev/null; then shellcheck $(SCRIPTS_SH); else echo "lint: shellcheck not installed, skipped"; fi

fmt: ## reformat the Rust sources (fixes what `make lint` reports from rustfmt)
	$(CARGO) fmt --all

cluster: build ## run N local peers until all are READY (make cluster N=16; HOLD=1 keeps them up until Ctrl-C or their timeout)
	N=$(N) scripts/cluster.sh

$(CLASSIC_BIN): bench/classic.c
	mkdir -p $(@D)
	$(BENCH_CC) $(BENCH_CFLAGS) -o $@ $<

bench: build static $(CLASSIC_BIN) ## rollcall side by side with classic, floor and Serf: latency, datagrams, CPU, memory, loss (QUICK=1: under 2 min; writes target/bench/)
	@if ! command -v serf >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "bench: installing serf (apt-get install -y serf)"; \
			apt-get install -y -qq serf >/dev/null || { apt-get update -qq && apt-get install -y -qq serf >/dev/null; } \
				|| echo "bench: apt-get could not install serf: Serf is skipped"; \
		else \
			echo "bench: serf is not installed and installing it needs root and apt-get: Serf is skipped"; \
		fi; \
	fi
	@$(PYTHON) -c 'import matplotlib' 2>/dev/null || { echo "bench: installing matplotlib (pip)"; \
		$(PYTHON) -m pip install --quiet matplotlib || echo "bench: pip could not install matplotlib: no chart"; }
	$(PYTHON) scripts/bench.py --bin $(RELEASE_BIN) --classic $(CLASSIC_BIN) $(if $(filter 1 yes true,$(QUICK)),--quick) $(if $(SIM_PEERS),--sim-peers $(SIM_PEERS)) $(BENCH_ARGS)

fuzz: ## coverage-guided fuzzing of TARGET (decode or hosts) for SECONDS (default 60); needs cargo-fuzz
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $(or $(TARGET),decode) -- -max_total_time=$(or $(SECONDS),60)

k8s-validate: ## validate deploy/k8s offline against the Kubernetes schemas (strict); needs kubernetes-validate, which `make test` installs
	scripts/validate-k8s.sh

soak: ## the simulator on random seeds for SECONDS (default 600); a failure prints its seed
	ROLLCALL_SOAK_SECONDS=$(or $(SECONDS),600) $(CARGO) test --release --lib machine::sim::soak -- --ignored --nocapture

clean: ## remove build output and bench results (target/)
	$(CARGO) clean

# ---------------------------------------------------------------------------
# Containers. The image is FROM scratch around the statically linked binary.
# ---------------------------------------------------------------------------
IMAGE      ?= rollcall:latest
STATIC_BIN := target/x86_64-unknown-linux-gnu/release/rollcall
STATIC_RUSTFLAGS := -C target-feature=+crt-static
# A job's own image with rollcall copied in front of it (deploy/compose/job).
JOB_IMAGE  ?= rollcall-hello-job:latest
COMPOSE    ?= $(shell if command -v docker-compose >/dev/null 2>&1; then echo docker-compose; else echo docker compose; fi)

.PHONY: static image job-static job-image compose-up compose-down smoke

static: ## the statically linked binary that goes into the image
	RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) build --release --target x86_64-unknown-linux-gnu

image: static ## build the container image rollcall:latest (FROM scratch, around the binary of `make static`)
	docker build -q -t $(IMAGE) .
	@docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' $(IMAGE)

# The same flags as `static`, so the two builds share their dependencies.
job-static: ## the example job examples/hello-job.rs, linked statically like the image's binary
	RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) build --release --target x86_64-unknown-linux-gnu --example hello-job

job-image: image job-static ## build rollcall-hello-job:latest: a job's own image with rollcall in front (deploy/compose/job)
	docker build -q -t $(JOB_IMAGE) --build-arg ROLLCALL_IMAGE=$(IMAGE) -f deploy/compose/job/Dockerfile .
	@docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' $(JOB_IMAGE)

compose-up: image ## build the image, then five peers in docker compose (compose.yaml), in the foreground; Ctrl-C stops them
	$(COMPOSE) up --force-recreate

compose-down: ## remove the compose cluster
	$(COMPOSE) down --remove-orphans

smoke: job-image ## build the images, then the container smoke tests: seven docker compose scenarios (SMOKE="restart stop" runs some)
	scripts/smoke.sh $(SMOKE)
