#!/usr/bin/env bash
# hcleak's speed-and-scale benchmark (issue 5). See benches/README.md for what each number means.
#
#   bash benches/run.sh                          # full run: ~1 GB capture, ~10 minutes on 2 cores
#   BENCH_PACKETS=200000 BENCH_FLOOD_PACKETS=1000000 bash benches/run.sh   # quick run, ~1 minute
#
# Knobs (environment):
#   BENCH_PACKETS        packets in the main `lb` captures (default 2000000 ≈ 1.0 GB full payload)
#   BENCH_LINEAR_FACTOR  the linearity run uses this many times BENCH_PACKETS (default 10; at the
#                        default size that capture also holds over a million connections: the memory test)
#   BENCH_FLOOD_PACKETS  SYNs in the flood capture (default 10000000)
#   BENCH_FLOOD_RATE     SYNs per second of capture time in the flood (default 500000)
#   BENCH_TSHARK_DIV     tshark reads the first 1/DIV of the capture (default 20); its rate is per packet
#   BENCH_REPEAT         timed runs per measurement; the median wall time is kept (default 5)
#   BENCH_SEED           generator seed (default 1)
#   BENCH_TIMEOUT        seconds before any single command is killed (default 600)
#   BENCH_DIR            parent of the temporary directory (default $TMPDIR or /tmp); removed at the end
#
# Generated captures live only in a mktemp directory and are deleted on exit; nothing is committed.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${BENCH_PACKETS:-2000000}
LIN=${BENCH_LINEAR_FACTOR:-10}
FLOOD_N=${BENCH_FLOOD_PACKETS:-10000000}
FLOOD_RATE=${BENCH_FLOOD_RATE:-500000}
TDIV=${BENCH_TSHARK_DIV:-20}
REPEAT=${BENCH_REPEAT:-5}
SEED=${BENCH_SEED:-1}
TMO=${BENCH_TIMEOUT:-600}

die() { echo "run.sh: $*" >&2; exit 1; }
[ -x /usr/bin/time ] || die "/usr/bin/time is missing: apt-get install -y time"
command -v tcpdump >/dev/null || die "tcpdump is missing: apt-get install -y tcpdump"
HAVE_TSHARK=1
command -v tshark >/dev/null || { HAVE_TSHARK=0; echo "run.sh: tshark missing, its rows are skipped (apt-get install -y tshark)" >&2; }
command -v python3 >/dev/null || die "python3 is needed to read hcleak's JSON counters"

echo "== build"
cargo build --release --examples --bins 2>&1 | tail -1
HCLEAK=$PWD/target/release/hcleak
GEN=$PWD/target/release/examples/gen_capture
FLOOR=$PWD/target/release/examples/pcap_floor
STAGES=$PWD/target/release/examples/stages

TMP=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/hcleak-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
RES=$TMP/results.tsv
: >"$RES"

echo "== machine"
echo "commit $(git rev-parse --short HEAD)$(git status --porcelain src Cargo.toml | grep -q . && echo ' + uncommitted changes in src/')"
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
awk '$1 > 0.5 { print "run.sh: warning: load " $1 " before the run; something else is busy and the times will be noisy" }' /proc/loadavg >&2
echo "$(tcpdump --version 2>&1 | head -1); $( [ $HAVE_TSHARK = 1 ] && tshark --version | head -1)"

# gen NAME PACKETS ARGS... → $TMP/NAME.pcap, with the generator's summary in $TMP/NAME.gen
gen() {
  local name=$1 n=$2
  shift 2
  timeout "$TMO" "$GEN" --out "$TMP/$name.pcap" --packets "$n" --seed "$SEED" "$@" 2>"$TMP/$name.gen" \
    || { cat "$TMP/$name.gen" >&2; die "generating $name failed"; }
  printf '%-10s %s\n' "$name" "$(sed 's/^gen_capture: //' "$TMP/$name.gen")"
}
packets_of() { sed -n 's/^gen_capture: \([0-9]*\) packets.*/\1/p' "$TMP/$1.gen"; }
conns_of() { sed -n 's/.* \([0-9]*\) connections started.*/\1/p' "$TMP/$1.gen"; }

# measure LABEL NAME CMD... — runs CMD (with the file name spliced in where @F@ appears) REPEAT
# times; keeps the median wall time and the largest peak RSS. stdout of the last run goes to
# $TMP/LABEL.out (with / in LABEL made _). Exit codes 0-3 are hcleak's verdicts, not failures; a timeout or crash is.
measure() {
  local label=$1 name=$2
  shift 2
  local f=$TMP/$name.pcap args=() a out=$TMP/${label//\//_}
  for a in "$@"; do args+=("${a//@F@/$f}"); done
  cat "$f" >/dev/null # the file is in the page cache for every tool alike
  local walls=() cpus=() rss=0 i t0 t1 rc
  for ((i = 0; i < REPEAT; i++)); do
    t0=$(date +%s%N)
    set +e
    timeout "$TMO" /usr/bin/time -f '%e %M %U %S' -o "$TMP/time" "${args[@]}" >"$out.out" 2>"$out.err"
    rc=$?
    set -e
    t1=$(date +%s%N)
    if [ "$rc" -gt 3 ]; then
      echo "run.sh: $label exited $rc:" >&2
      head -3 "$out.err" >&2
      return 1
    fi
    walls+=("$(( (t1 - t0) / 1000 - HARNESS_US > 1 ? (t1 - t0) / 1000 - HARNESS_US : 1 ))")
    local m
    m=$(tail -1 "$TMP/time" | cut -d' ' -f2)
    cpus+=("$(tail -1 "$TMP/time" | awk '{ printf "%d", ($3 + $4) * 1e6 }')")
    [ "$m" -gt "$rss" ] && rss=$m
  done
  local med
  med=$(printf '%s\n' "${walls[@]}" | sort -n | sed -n "$(( (REPEAT + 1) / 2 ))p")
  local cpu
  cpu=$(printf '%s\n' "${cpus[@]}" | sort -n | sed -n "$(( (REPEAT + 1) / 2 ))p")
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$(packets_of "$name")" "$(stat -c %s "$f")" "$med" "$rss" "$cpu" >>"$RES"
  awk -v l="$label" -v t="$med" -v m="$rss" 'BEGIN { printf "  %-22s %8.2f s %8.1f MiB\n", l, t / 1e6, m / 1024 }'
}

# What `timeout` and `/usr/bin/time` themselves cost around a command (a few ms: two more processes):
# the median over REPEAT runs of `true`, subtracted from every wall time so that short runs (the
# 100 k-packet prefixes) are not charged for the harness.
harness=()
for ((i = 0; i < REPEAT; i++)); do
  t0=$(date +%s%N)
  timeout "$TMO" /usr/bin/time -f '%e %M %U %S' -o "$TMP/time" true
  t1=$(date +%s%N)
  harness+=("$(( (t1 - t0) / 1000 ))")
done
HARNESS_US=$(printf '%s\n' "${harness[@]}" | sort -n | sed -n "$(( (REPEAT + 1) / 2 ))p")
echo "harness (timeout + /usr/bin/time around \`true\`): $(awk -v u="$HARNESS_US" 'BEGIN { printf "%.1f", u / 1000 }') ms, subtracted from every wall time below"

# get LABEL FIELD → a field of results.tsv (2 packets, 3 bytes, 4 µs, 5 KiB)
get() { awk -F'\t' -v l="$1" -v c="$2" '$1 == l { print $c }' "$RES"; }
pps() { awk -F'\t' -v l="$1" '$1 == l { printf "%.0f", $2 / ($4 / 1e6) }' "$RES"; }

echo "== generate (seed $SEED)"
N_PRE=$(( N / TDIV ))
gen lb_full "$N"
gen lb_s96 "$N" --snaplen 96
gen pre_full "$N_PRE"
gen pre_s96 "$N_PRE" --snaplen 96
gen lb_big "$(( N * LIN ))" --snaplen 96
gen flood "$FLOOD_N" --snaplen 96 --mix synflood --rate "$FLOOD_RATE"
gen elephant "$N" --snaplen 96 --mix elephant
# The small captures are byte-for-byte prefixes of the big ones (same seed, fewer packets).
cmp -s -n "$(stat -c %s "$TMP/pre_s96.pcap")" "$TMP/pre_s96.pcap" "$TMP/lb_s96.pcap" \
  || echo "run.sh: warning: pre_s96 is not a prefix of lb_s96" >&2

echo "== time (median of $REPEAT)"
for v in full s96; do
  measure "hcleak/$v" "lb_$v" "$HCLEAK" analyze @F@ --format json
  measure "hcleak-1thread/$v" "lb_$v" "$HCLEAK" analyze @F@ --format json --threads 1
  measure "tcpdump/$v" "lb_$v" tcpdump -nr @F@ -w /dev/null
  measure "floor/$v" "lb_$v" "$FLOOR" @F@
  # The same loop through the 64 KiB stdio buffer hcleak gives libpcap: what the buffer alone is
  # worth, and the floor for a reader that opens files the way hcleak does.
  measure "floor-64k/$v" "lb_$v" "$FLOOR" @F@ 65536
  # Two floor loops at once: how much running two threads costs each of them on this machine
  # (shared caches, memory bandwidth, a hypervisor's siblings). No two-thread reader beats it.
  measure "floor-x2/$v" "lb_$v" bash -c '"$0" "$1" >/dev/null & "$0" "$1" >/dev/null; wait' "$FLOOR" @F@
  measure "hcleak-prefix/$v" "pre_$v" "$HCLEAK" analyze @F@ --format json
  if [ $HAVE_TSHARK = 1 ]; then measure "tshark-prefix/$v" "pre_$v" tshark -r @F@ -q -z conv,tcp; fi
done
measure "hcleak/elephant" elephant "$HCLEAK" analyze @F@ --format json
measure "floor/elephant" elephant "$FLOOR" @F@

echo "== linearity and memory ($LIN × $N packets, $(conns_of lb_big) connections)"
OLD_REPEAT=$REPEAT
# The linearity ratio divides by one run of the big file: a median of three keeps one slow run
# on this kind of host from deciding it (a single run read 11.35 where hand runs of the same build
# gave 2.2–2.4 s against 0.25, about 9).
REPEAT=$(( OLD_REPEAT < 3 ? OLD_REPEAT : 3 ))
measure "hcleak/big" lb_big "$HCLEAK" analyze @F@ --format json
REPEAT=1
echo "== flood ($FLOOD_N unanswered SYNs at $FLOOD_RATE/s)"
measure "hcleak/flood" flood "$HCLEAK" analyze @F@ --format json
measure "hcleak/flood-100k" flood "$HCLEAK" analyze @F@ --format json --max-flows 100000
measure "floor/flood" flood "$FLOOR" @F@
REPEAT=$OLD_REPEAT

echo "== stages on lb_s96 (examples/stages: each pass does one stage more)"
timeout "$TMO" "$STAGES" "$TMP/lb_s96.pcap" | sed 's/  \[.*//'

# counters from hcleak's JSON (peak_flows and flows_evicted where this hcleak reports them)
counters() {
  python3 - "$1" <<'EOF' || echo "(no JSON counters)"
import json, sys
c = json.load(open(sys.argv[1])).get("capture", {})
print(", ".join(f"{k} {c[k]}" for k in ("packets", "peak_flows", "flows_evicted") if k in c))
EOF
}

echo
echo "== results"
printf '%-22s %9s %9s %12s %9s %10s\n' tool seconds "CPU s" packets/s MB/s "RSS MiB"
awk -F'\t' '{ s = $4 / 1e6; printf "%-22s %9.2f %9.2f %12.0f %9.1f %10.1f\n", $1, s, $6 / 1e6, $2 / s, $3 / s / 1e6, $5 / 1024 }' "$RES"
echo
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
for v in full s96; do
  h=$(pps "hcleak/$v")
  echo "$v: hcleak/floor $(ratio "$h" "$(pps "floor/$v")") (one thread: $(ratio "$(pps "hcleak-1thread/$v")" "$(pps "floor/$v")");" \
    "against the floor with a 64 KiB buffer: $(ratio "$h" "$(pps "floor-64k/$v")");" \
    "two floors at once each reach $(ratio "$(pps "floor-x2/$v")" "$(pps "floor/$v")") of one alone)  hcleak/tcpdump $(ratio "$h" "$(pps "tcpdump/$v")")" \
    "$( [ $HAVE_TSHARK = 1 ] && echo " hcleak/tshark $(ratio "$(pps "hcleak-prefix/$v")" "$(pps "tshark-prefix/$v")") (both on the first 1/$TDIV: $N_PRE packets)")"
done
echo "elephant (one connection): hcleak/floor $(ratio "$(pps hcleak/elephant)" "$(pps floor/elephant)")"
echo "linearity: time($LIN×N) / time(N) = $(ratio "$(get hcleak/big 4)" "$(get hcleak/s96 4)") (ideal $LIN)"
echo "memory: $(conns_of lb_big) connections, peak RSS $(awk -v k="$(get hcleak/big 5)" 'BEGIN{printf "%.1f", k/1024}') MiB (target < 64 MiB); $(counters "$TMP/hcleak_big.out")"
echo "flood, --max-flows default: $(pps hcleak/flood) packets/s, peak RSS $(awk -v k="$(get hcleak/flood 5)" 'BEGIN{printf "%.1f", k/1024}') MiB; $(counters "$TMP/hcleak_flood.out")"
echo "flood, --max-flows 100000: $(pps hcleak/flood-100k) packets/s, peak RSS $(awk -v k="$(get hcleak/flood-100k 5)" 'BEGIN{printf "%.1f", k/1024}') MiB; $(counters "$TMP/hcleak_flood-100k.out")"
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
