#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/k8s offline, no cluster needed:
#
#   1. every manifest against the Kubernetes JSON schemas, in strict mode
#      (an unknown field is an error), with the kubernetes-validate package
#      from PyPI, which ships the schemas; a manifest whose apiVersion/kind
#      has no schema fails too (the validator itself only warns);
#   2. what no schema can say, the rules that keep the peers from
#      deadlocking: kustomization.yaml lists every manifest; the hosts list
#      in the ConfigMap is exactly <statefulset>-0.<service> ..
#      <statefulset>-(replicas-1).<service>; the Service is headless and
#      publishes not-ready addresses; podManagementPolicy is Parallel; the
#      ready file is on a mounted volume;
#   3. if kubectl is on PATH, the output of `kubectl kustomize` (what
#      `kubectl apply -k` sends) against the schemas again.
#
# usage: scripts/validate-k8s.sh [DIR]       (default: deploy/k8s)
#
# Needs kubernetes-validate for $PYTHON; this script never installs it:
#   python3 -m pip install 'kubernetes-validate==1.37.0'
#
# Environment:
#   PYTHON        the interpreter with kubernetes_validate (default python3)
#   K8S_VERSIONS  Kubernetes versions to validate against (default
#                 "1.30.0 1.37.0": the oldest we support and the newest the
#                 pinned package knows)
set -euo pipefail

PYTHON=${PYTHON:-python3}
K8S_VERSIONS=${K8S_VERSIONS:-1.30.0 1.37.0}
PIP_HINT="$PYTHON -m pip install 'kubernetes-validate==1.37.0'"

die() {
	printf 'validate-k8s: %s\n' "$*" >&2
	exit 1
}

usage="usage: scripts/validate-k8s.sh [DIR]   (default: deploy/k8s of this repository)"
case ${1:-} in
-h | --help)
	echo "$usage"
	exit 0
	;;
-*) die "unknown option $1; $usage" ;;
esac
(($# <= 1)) || die "$usage"
if (($# == 1)); then
	dir=$1
else
	cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.."
	dir=deploy/k8s
fi
[[ -d $dir ]] || die "no such directory: $dir"

command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON)"
"$PYTHON" -c 'import kubernetes_validate' 2>/dev/null ||
	die "the kubernetes-validate package is not installed for $PYTHON; install it with: $PIP_HINT"

# Every *.yaml/*.yml but the kustomization, which is not a Kubernetes object.
manifests=()
shopt -s nullglob
for f in "$dir"/*.yaml "$dir"/*.yml; do
	case ${f##*/} in
	kustomization.yaml | kustomization.yml) continue ;;
	esac
	manifests+=("$f")
done
shopt -u nullglob
((${#manifests[@]} > 0)) || die "no manifests (*.yaml, *.yml) in $dir"

version_args=()
for v in $K8S_VERSIONS; do
	version_args+=(-k "$v")
done
((${#version_args[@]} > 0)) || die "K8S_VERSIONS is empty"

# schema_check WHAT FILE...: kubernetes-validate in strict mode; its output
# is shown. It exits 0 on a kind it has no schema for (a WARN line): that
# is a typo'd apiVersion or kind here, so it fails.
schema_check() {
	local what=$1 out rc=0
	shift
	out=$("$PYTHON" -m kubernetes_validate --strict "${version_args[@]}" "$@" 2>&1) || rc=$?
	[[ -z $out ]] || printf '%s\n' "$out"
	if ((rc != 0)); then
		die "$what: schema validation failed (exit status $rc, see above)"
	fi
	if grep -q '^WARN' <<<"$out"; then
		die "$what: no schema for an apiVersion/kind above (a typo, or a kind this Kubernetes version lacks)"
	fi
}

echo "==> schemas (strict), Kubernetes $K8S_VERSIONS: ${manifests[*]}"
schema_check "$dir" "${manifests[@]}"

echo "==> rollcall rules: $dir"
"$PYTHON" - "$dir" "${manifests[@]}" <<'PY' || die "$dir breaks the rules above (ERROR lines)"
import os, posixpath, sys
import yaml  # a dependency of kubernetes-validate

directory, files = sys.argv[1], sys.argv[2:]
errors = []

def fail(msg):
    errors.append(msg)

objects = []
for f in files:
    with open(f) as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    if not docs:
        fail(f"{f}: no Kubernetes object in it")
    objects += [(f, d) for d in docs]

# kustomization.yaml must list exactly the manifests, or `apply -k` misses one.
kpath = next((os.path.join(directory, k) for k in ("kustomization.yaml", "kustomization.yml")
              if os.path.exists(os.path.join(directory, k))), None)
if kpath is None:
    fail(f"{directory}: no kustomization.yaml (README.md deploys with kubectl apply -k)")
else:
    with open(kpath) as fh:
        listed = set((yaml.safe_load(fh) or {}).get("resources") or [])
    present = {os.path.basename(f) for f in files}
    for name in sorted(present - listed):
        fail(f"{kpath}: resources does not list {name}")
    for name in sorted(listed - present):
        fail(f"{kpath}: resources lists {name}, which is not in {directory}")

def of_kind(kind):
    return [d for _, d in objects if d.get("kind") == kind]

def name(d):
    return (d.get("metadata") or {}).get("name")

statefulsets = of_kind("StatefulSet")
if len(statefulsets) != 1:
    fail(f"expected one StatefulSet, found {len(statefulsets)}")
else:
    sts = statefulsets[0]
    spec = sts.get("spec") or {}
    where = f"statefulset {name(sts)}"
    replicas = spec.get("replicas", 1)
    if spec.get("podManagementPolicy") != "Parallel":
        fail(f"{where}: podManagementPolicy must be Parallel (OrderedReady waits for "
             "rc-0 to be Ready, which it never is alone)")

    service_name = spec.get("serviceName")
    services = [s for s in of_kind("Service") if name(s) == service_name]
    if not services:
        fail(f"{where}: serviceName {service_name!r} names no Service here")
    else:
        svc = services[0].get("spec") or {}
        if svc.get("clusterIP") != "None":
            fail(f"service {service_name}: must be headless (clusterIP: None) for per-pod DNS names")
        if svc.get("publishNotReadyAddresses") is not True:
            fail(f"service {service_name}: publishNotReadyAddresses must be true "
                 "(peers resolve each other before any is Ready)")

    pod = (spec.get("template") or {}).get("spec") or {}
    containers = pod.get("containers") or []
    rollcall = next((c for c in containers
                     if any(e.get("name") == "ROLLCALL_HOSTS" for e in c.get("env") or [])), None)
    if rollcall is None:
        fail(f"{where}: no container sets ROLLCALL_HOSTS")
    else:
        env = {e.get("name"): e.get("value") for e in rollcall.get("env") or []}
        mounts = {m.get("mountPath"): m.get("name") for m in rollcall.get("volumeMounts") or []}
        volumes = {v.get("name"): v for v in pod.get("volumes") or []}

        ready_file = env.get("ROLLCALL_READY_FILE")
        if not ready_file or posixpath.dirname(ready_file) not in mounts:
            fail(f"{where}: ROLLCALL_READY_FILE ({ready_file}) must be on a mounted volume "
                 "(the root filesystem is read-only)")

        hosts_path = env.get("ROLLCALL_HOSTS")
        volume = volumes.get(mounts.get(posixpath.dirname(hosts_path or "")), {})
        cm_name = (volume.get("configMap") or {}).get("name")
        configmaps = [c for c in of_kind("ConfigMap") if name(c) == cm_name]
        if not hosts_path or not configmaps:
            fail(f"{where}: ROLLCALL_HOSTS ({hosts_path}) must be a file of a ConfigMap "
                 "from this directory, mounted on its directory")
        else:
            key = posixpath.basename(hosts_path)
            text = (configmaps[0].get("data") or {}).get(key)
            if text is None:
                fail(f"configmap {cm_name}: no key {key!r} (ROLLCALL_HOSTS is {hosts_path})")
            else:
                entries = [l.split("#", 1)[0].strip() for l in text.splitlines()]
                entries = [e for e in entries if e]
                want = [f"{name(sts)}-{i}.{service_name}" for i in range(replicas)]
                if entries != want:
                    fail(f"configmap {cm_name}: the hosts list must be exactly the "
                         f"{replicas} pods of {where} (replicas: {replicas}): "
                         f"{', '.join(want)}; it has {', '.join(entries) or 'nothing'}. "
                         "Change replicas and the list together (deploy/k8s/README.md, Scaling)")

for e in errors:
    print(f"ERROR {e}")
if errors:
    sys.exit(1)
print(f"OK {len(objects)} objects in {directory}")
PY

if command -v kubectl >/dev/null; then
	echo "==> kubectl kustomize $dir (what kubectl apply -k sends), schemas (strict)"
	built=$(mktemp "${TMPDIR:-/tmp}/validate-k8s.XXXXXX")
	trap 'rm -f -- "$built"' EXIT
	kubectl kustomize "$dir" >"$built" || die "kubectl kustomize $dir failed"
	schema_check "kubectl kustomize $dir" --quiet "$built"
else
	echo "==> kubectl kustomize: skipped (kubectl not on PATH)"
fi

echo "validate-k8s: $dir is valid"
