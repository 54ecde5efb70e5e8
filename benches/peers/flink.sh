#!/usr/bin/env bash
# FlinkCEP against Strix on the same events, the same keyed 3-step rule and the same semantics.
#
# Downloads the Flink 2.3.0 jars (PyPI wheel `apache-flink-libraries`), compiles
# benches/peers/flink/StrixBench.java, generates a `strix gen market` tape, exports its events as
# CSV, replays the tape through examples/rules/bench3.cep with Strix and runs the same pattern with
# FlinkCEP (and, with SASE=1, with the varpulis-sase crate: benches/peers/sase/). Fails (exit 1)
# unless every peer reports the same matches as Strix (count and the events of each match); prints
# the throughputs and the ratios. Not part of CI. See benches/peers/README.md.
#
# Environment (all optional):
#   EVENTS=10000000     events on the tape
#   SEED=7              generator seed
#   PEERS_DIR=target/peers   cache: wheel, jars, classes, tapes, CSV exports, outputs
#   STRIX=path          strix binary to use (default: build target/release/strix with cargo)
#   STRIX_ARGS="..."    extra arguments for `strix replay` (e.g. matcher or shard options)
#   RUNS=1              runs of each side; the best throughput of each is reported
#   SASE=0              1: also build and run the varpulis-sase peer (cargo, crates.io)
#   JAVA_HEAP=4g        heap of the Flink JVM
#   JAVA=java JAVAC=javac PYTHON=python3 PIP="python3 -m pip"
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

EVENTS=${EVENTS:-10000000}
SEED=${SEED:-7}
PEERS_DIR=${PEERS_DIR:-target/peers}
STRIX_ARGS=${STRIX_ARGS:-}
RUNS=${RUNS:-1}
SASE=${SASE:-0}
JAVA_HEAP=${JAVA_HEAP:-4g}
JAVA=${JAVA:-java}
JAVAC=${JAVAC:-javac}
PYTHON=${PYTHON:-python3}
PIP=${PIP:-$PYTHON -m pip}
FLINK_VERSION=2.3.0
RULES=examples/rules/bench3.cep

say() { printf '== %s\n' "$*" >&2; }

mkdir -p "$PEERS_DIR"
PEERS_DIR=$(cd "$PEERS_DIR" && pwd)

# --- Strix binary --------------------------------------------------------------------------------
if [[ -z "${STRIX:-}" ]]; then
    say "building strix (release)"
    cargo build --release --quiet --bin strix
    STRIX=target/release/strix
fi

# --- Flink jars ----------------------------------------------------------------------------------
WHEEL_DIR=$PEERS_DIR/wheel
JARS=$PEERS_DIR/flink-$FLINK_VERSION
if ! compgen -G "$WHEEL_DIR/apache_flink_libraries-$FLINK_VERSION-*.whl" >/dev/null; then
    say "downloading apache-flink-libraries==$FLINK_VERSION from PyPI"
    $PIP download --quiet --no-deps "apache-flink-libraries==$FLINK_VERSION" -d "$WHEEL_DIR"
fi
if [[ ! -f $JARS/.complete ]]; then
    say "extracting jars to $JARS"
    mkdir -p "$JARS"
    WHEEL=$(compgen -G "$WHEEL_DIR/apache_flink_libraries-$FLINK_VERSION-*.whl" | head -n1)
    # flink-dist (runtime, DataStream API, mini cluster), flink-cep, and log4j so that Flink's
    # logging has a backend (it logs errors only, to the console, without a configuration).
    "$PYTHON" - "$WHEEL" "$JARS" <<'PY'
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
wanted = ("flink-dist-", "flink-cep-", "log4j-api-", "log4j-core-", "log4j-slf4j-impl-")
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist()
             if n.startswith("pyflink/lib/") and n.endswith(".jar")
             and os.path.basename(n).startswith(wanted)]
    missing = [w for w in wanted if not any(os.path.basename(n).startswith(w) for n in names)]
    if missing:
        sys.exit(f"the wheel has no jar named {missing}")
    for n in names:
        with open(os.path.join(out, os.path.basename(n)), "wb") as f:
            f.write(z.read(n))
PY
    touch "$JARS/.complete"
fi
CP="$JARS/*"

# --- FlinkCEP job --------------------------------------------------------------------------------
CLASSES=$PEERS_DIR/classes
SRC=benches/peers/flink/StrixBench.java
if [[ ! -f $CLASSES/StrixBench.class || $SRC -nt $CLASSES/StrixBench.class ]]; then
    say "compiling $SRC"
    mkdir -p "$CLASSES"
    "$JAVAC" -nowarn -cp "$CP" -d "$CLASSES" "$SRC"
fi

# --- Tape and CSV export -------------------------------------------------------------------------
TAPE=$PEERS_DIR/market-$EVENTS-$SEED.tape
CSV=$PEERS_DIR/market-$EVENTS-$SEED.csv
if [[ ! -f $TAPE ]]; then
    say "generating $TAPE"
    "$STRIX" gen market --events "$EVENTS" --seed "$SEED" --out "$TAPE.tmp" >&2
    mv "$TAPE.tmp" "$TAPE"
fi
if [[ ! -f $CSV || $TAPE -nt $CSV ]]; then
    say "exporting $CSV"
    "$STRIX" tape export --format csv --out "$CSV.tmp" "$TAPE" >&2
    mv "$CSV.tmp" "$CSV"
fi

# Java 17 needs these for Flink's serializers and memory management (Flink's own scripts pass
# them too).
JAVA_OPENS=()
for p in java.lang java.net java.io java.nio sun.nio.ch java.lang.reflect java.text java.time \
    java.util java.util.concurrent java.util.concurrent.atomic java.util.concurrent.locks; do
    JAVA_OPENS+=("--add-opens=java.base/$p=ALL-UNNAMED")
done

# --- varpulis-sase peer (optional) --------------------------------------------------------------
SASE_BIN=$PEERS_DIR/sase-target/release/strix-peer-sase
if [[ $SASE == 1 ]]; then
    say "building the varpulis-sase peer"
    CARGO_TARGET_DIR=$PEERS_DIR/sase-target cargo build --release --quiet \
        --manifest-path benches/peers/sase/Cargo.toml
fi

STRIX_OUT=$PEERS_DIR/strix-$EVENTS-$SEED.jsonl
FLINK_OUT=$PEERS_DIR/flink-$EVENTS-$SEED.txt
STRIX_REPORTS=$PEERS_DIR/strix-$EVENTS-$SEED.reports
FLINK_REPORTS=$PEERS_DIR/flink-$EVENTS-$SEED.reports
: >"$STRIX_REPORTS"
: >"$FLINK_REPORTS"
SASE_OUT=$PEERS_DIR/sase-$EVENTS-$SEED.txt
SASE_REPORTS=$PEERS_DIR/sase-$EVENTS-$SEED.reports
: >"$SASE_REPORTS"

for ((run = 1; run <= RUNS; run++)); do
    say "run $run/$RUNS: strix replay $RULES ${STRIX_ARGS}"
    # shellcheck disable=SC2086 # STRIX_ARGS is a list of arguments
    "$STRIX" replay --rules "$RULES" --tape "$TAPE" --out "$STRIX_OUT" --json $STRIX_ARGS \
        >>"$STRIX_REPORTS"
    say "run $run/$RUNS: FlinkCEP (parallelism 1, event time)"
    "$JAVA" "-Xmx$JAVA_HEAP" "${JAVA_OPENS[@]}" -cp "$CLASSES:$CP" StrixBench \
        --csv "$CSV" --matches "$FLINK_OUT" >>"$FLINK_REPORTS"
    if [[ $SASE == 1 ]]; then
        say "run $run/$RUNS: varpulis-sase (one thread, event time)"
        "$SASE_BIN" --csv "$CSV" --matches "$SASE_OUT" >>"$SASE_REPORTS"
    fi
done

# --- Compare -------------------------------------------------------------------------------------
"$PYTHON" - "$EVENTS" "$SEED" "$STRIX_REPORTS" "$STRIX_OUT" \
    flinkcep "$FLINK_REPORTS" "$FLINK_OUT" varpulis-sase "$SASE_REPORTS" "$SASE_OUT" <<'PY'
import json, sys
events, seed, strix_reports, strix_out = sys.argv[1:5]
peers = [sys.argv[i:i + 3] for i in range(5, len(sys.argv), 3)]

def reports(path):
    return [json.loads(l) for l in open(path) if l.strip()]

def best(rs):
    return max(rs, key=lambda r: r["events_per_s"])

strix = reports(strix_reports)
s_best = best(strix)
s_matches = sorted(tuple(json.loads(l)["seq"]) for l in open(strix_out) if l.strip())
s_counts = {r["signals"] for r in strix}
print(f"tape: gen market, {events} events, seed {seed}; rule examples/rules/bench3.cep")
print(f"{'strix':14s} matches {len(s_matches):>8}   {s_best['events_per_s']/1e6:8.2f} M events/s"
      f"   ({s_best['elapsed_s']:.3f} s, matcher {s_best.get('matcher', '?')}, best of {len(strix)})")
ok = len(s_counts) == 1
if not ok:
    print(f"MISMATCH: strix runs disagree: {sorted(s_counts)} matches")
for name, rep_path, out_path in peers:
    rs = reports(rep_path)
    if not rs:
        continue
    p_best = best(rs)
    p_matches = sorted(tuple(int(x) for x in l.split()) for l in open(out_path) if l.strip())
    p_counts = {r["matches"] for r in rs}
    ratio = s_best["events_per_s"] / p_best["events_per_s"]
    print(f"{name:14s} matches {len(p_matches):>8}   {p_best['events_per_s']/1e6:8.2f} M events/s"
          f"   ({p_best['elapsed_s']:.3f} s, best of {len(rs)})   strix / {name}: {ratio:.1f}x")
    if p_counts != s_counts:
        print(f"MISMATCH: match counts differ: strix {sorted(s_counts)}, {name} {sorted(p_counts)}")
        ok = False
    elif p_matches != s_matches:
        only_s = sorted(set(s_matches) - set(p_matches))[:5]
        only_p = sorted(set(p_matches) - set(s_matches))[:5]
        print(f"MISMATCH: matched events differ; only strix: {only_s}; only {name}: {only_p}")
        ok = False
if ok:
    print(f"OK: same {len(s_matches)} matches (same events in each) from every peer")
sys.exit(0 if ok else 1)
PY
