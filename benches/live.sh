#!/usr/bin/env bash
# hcleak's live-capture benchmark (issue 15): does `hcleak capture` keep up wherever
# `tcpdump -w /dev/null` does? See benches/README.md ("Live capture") for the results.
#
#   sudo bash benches/live.sh                       # ~3 minutes
#   LIVE_SOAK_SECS=600 sudo bash benches/live.sh    # the full 10-minute memory run
#
# A network namespace of its own (removed on exit, whatever happens): a generated load-balancer
# capture (full payloads) is replayed with tcpreplay into the namespace's `lo` at rising rates and
# at top speed, while `hcleak capture` (default flags, --no-sample) and `tcpdump -w /dev/null`
# capture side by side in the same run. The frames go to foreign MAC addresses, so the kernel drops
# them after the capture taps and nothing answers. Each capture is stopped (SIGINT, by its PID)
# half a second after the replay ends.
#
# Reported per rate: packets sent, packets each tool reported, the kernel's drops (on lo the kernel
# counts both copies of every packet, so its "received" is twice what was sent; drops count copies
# too), lost = sent − reported, CPU per packet, peak RSS. Then a soak at 50 k packets/s for
# LIVE_SOAK_SECS with RSS sampled every 10 s.
#
# Knobs (environment):
#   LIVE_PACKETS    packets in the generated capture (default 250000)
#   LIVE_RATES      replay rates in packets/s, `top` for --topspeed (default "10000 30000 100000 150000 top top top")
#   LIVE_SECS       seconds of replay per fixed rate (default 4; top speed replays the whole capture)
#   LIVE_SOAK_SECS  seconds of the 50 k packets/s memory run (default 60; 0 skips it)
#   LIVE_ARGS       arguments for hcleak capture (default --no-sample, as in issue 15's figures; "" for
#                   its defaults, which sample local backends — none are local in the namespace)
set -euo pipefail
cd "$(dirname "$0")/.."

N=${LIVE_PACKETS:-250000}
RATES=${LIVE_RATES:-10000 30000 100000 150000 top top top}
SECS=${LIVE_SECS:-4}
SOAK=${LIVE_SOAK_SECS:-60}
read -r -a EXTRA <<<"${LIVE_ARGS---no-sample}"

die() { echo "live.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (a network namespace and raw capture)"
for t in tcpreplay tcpdump ip python3 /usr/bin/time; do command -v "$t" >/dev/null || die "$t is missing"; done

echo "== build"
cargo build --release --bins --example gen_capture 2>&1 | tail -1
HCLEAK=$PWD/target/release/hcleak
GEN=$PWD/target/release/examples/gen_capture

NS=hcleak-bench-$$
TMP=$(mktemp -d "${TMPDIR:-/tmp}/hcleak-live.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
# Foreground only: a function run in the background is a subshell, and would run the EXIT trap.
nsx() { ip netns exec "$NS" "$@"; }

echo "== machine"
echo "commit $(git rev-parse --short HEAD)$(git status --porcelain src Cargo.toml | grep -q . && echo ' + uncommitted changes in src/')"
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
awk '$1 > 0.5 { print "live.sh: warning: load " $1 " before the run: the machine is shared, rates are lower bounds" }' /proc/loadavg >&2
echo "$(tcpdump --version 2>&1 | head -1); $(tcpreplay --version 2>&1 | head -1)"

echo "== generate"
"$GEN" --out "$TMP/lb.pcap" --packets "$N" 2>"$TMP/gen.txt"
sed 's/^gen_capture: //' "$TMP/gen.txt"

# child PID of /usr/bin/time (started through ip netns exec, which execs it: same PID).
child_of() {
  local p=$1 c i
  for ((i = 0; i < 200; i++)); do
    c=$(pgrep -P "$p" | head -1 || true)
    [ -n "$c" ] && { echo "$c"; return; }
    sleep 0.01
  done
  die "no child under $p"
}

# wait_for FILE TEXT: bounded wait until TEXT appears in FILE.
wait_for() {
  local i
  for ((i = 0; i < 500; i++)); do grep -q "$2" "$1" 2>/dev/null && return; sleep 0.02; done
  die "no '$2' in $1 after 10 s: $(cat "$1")"
}

# run LABEL TCPREPLAY-ARGS... → one result line.
run() {
  local label=$1
  shift
  local h=$TMP/h t=$TMP/t
  ip netns exec "$NS" /usr/bin/time -f '%U %S %M' -o "$h.time" "$HCLEAK" capture -i lo --format json "${EXTRA[@]}" >"$h.json" 2>"$h.err" &
  local hp=$!
  PIDS+=("$hp")
  ip netns exec "$NS" /usr/bin/time -f '%U %S %M' -o "$t.time" tcpdump -i lo -w /dev/null 2>"$t.err" &
  local tp=$!
  PIDS+=("$tp")
  local hc tc
  hc=$(child_of "$hp")
  tc=$(child_of "$tp")
  PIDS+=("$hc" "$tc")
  wait_for "$h.err" "listening on"
  wait_for "$t.err" "listening on"
  nsx tcpreplay -i lo "$@" "$TMP/lb.pcap" >"$TMP/replay.txt" 2>&1 || die "tcpreplay: $(cat "$TMP/replay.txt")"
  sleep 0.5
  kill -INT "$hc" "$tc"
  wait "$hp" || true
  wait "$tp" || true
  PIDS=()
  local sent rate
  sent=$(sed -n 's/.*Actual: \([0-9]*\) packets.*/\1/p' "$TMP/replay.txt")
  rate=$(sed -n 's/.*Rated: .*Mbps, \([0-9.]*\) pps.*/\1/p' "$TMP/replay.txt")
  local hrep hdrop trep tdrop
  hrep=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["capture"]["packets"])' "$h.json")
  hdrop=$(sed -n 's/.* \([0-9]*\) dropped by kernel.*/\1/p' "$h.err")
  trep=$(sed -n 's/^\([0-9]*\) packets captured/\1/p' "$t.err")
  tdrop=$(sed -n 's/^\([0-9]*\) packets dropped by kernel/\1/p' "$t.err")
  local hcpu trss tcpu hrss
  # The last line: GNU time puts "Command exited with non-zero status N" before it.
  read -r hu hs hrss < <(tail -1 "$h.time")
  read -r tu ts trss < <(tail -1 "$t.time")
  hcpu=$(awk -v u="$hu" -v s="$hs" -v n="$hrep" 'BEGIN { printf "%.2f", n ? (u + s) * 1e6 / n : 0 }')
  tcpu=$(awk -v u="$tu" -v s="$ts" -v n="$trep" 'BEGIN { printf "%.2f", n ? (u + s) * 1e6 / n : 0 }')
  printf '%-8s %9.0f %8d | %8d %7d %7d %6s %6.0f | %8d %7d %7d %6s %6.0f\n' "$label" "$rate" "$sent" \
    "$hrep" "$hdrop" "$(( sent - hrep ))" "$hcpu" "$(awk -v k="$hrss" 'BEGIN { print k / 1024 }')" \
    "$trep" "$tdrop" "$(( sent - trep ))" "$tcpu" "$(awk -v k="$trss" 'BEGIN { print k / 1024 }')"
  echo "$label $rate $sent $hrep $hdrop $trep $tdrop" >>"$TMP/results"
}

echo "== side by side (hcleak capture ${EXTRA[*]:-(defaults)} | tcpdump -w /dev/null), stopped 0.5 s after the replay"
printf '%-8s %9s %8s | %8s %7s %7s %6s %6s | %8s %7s %7s %6s %6s\n' rate "pps" sent \
  "hcleak" drops lost "µs/pkt" "MiB" "tcpdump" drops lost "µs/pkt" "MiB"
: >"$TMP/results"
for r in $RATES; do
  if [ "$r" = top ]; then
    run top --topspeed
  else
    run "$r" --pps="$r" --limit="$(( r * SECS ))"
  fi
done
echo "== highest rate held: with zero kernel drops / with nothing lost (no drops and reported = sent)"
awk '{ if ($5 == 0 && $2 > hd) hd = $2; if ($7 == 0 && $2 > td) td = $2
       if ($5 == 0 && $4 == $3 && $2 > h) h = $2; if ($7 == 0 && $6 == $3 && $2 > t) t = $2 }
     END { printf "hcleak  %.0f / %.0f packets/s\ntcpdump %.0f / %.0f packets/s\n", hd, h, td, t }' "$TMP/results"

if [ "$SOAK" -gt 0 ]; then
  echo "== memory: hcleak capture at 50 k packets/s for $SOAK s (the capture looped), RSS every 10 s"
  ip netns exec "$NS" "$HCLEAK" capture -i lo --format json "${EXTRA[@]}" >"$TMP/soak.json" 2>"$TMP/soak.err" &
  sp=$!
  PIDS+=("$sp")
  wait_for "$TMP/soak.err" "listening on"
  ip netns exec "$NS" tcpreplay -i lo --pps=50000 --loop=0 --duration="$SOAK" "$TMP/lb.pcap" >"$TMP/replay.txt" 2>&1 &
  rp=$!
  PIDS+=("$rp")
  t0=$(date +%s)
  while kill -0 "$rp" 2>/dev/null; do
    sleep 10
    printf '  %4d s  RSS %6.1f MiB  peak %6.1f MiB\n' "$(( $(date +%s) - t0 ))" \
      "$(awk '/VmRSS/ { print $2 / 1024 }' "/proc/$sp/status")" "$(awk '/VmHWM/ { print $2 / 1024 }' "/proc/$sp/status")"
  done
  wait "$rp" || true
  sleep 0.5
  peak=$(awk '/VmHWM/ { print $2 / 1024 }' "/proc/$sp/status")
  kill -INT "$sp"
  wait "$sp" || true
  PIDS=()
  sent=$(sed -n 's/.*Actual: \([0-9]*\) packets.*/\1/p' "$TMP/replay.txt")
  rep=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["capture"]["packets"])' "$TMP/soak.json")
  echo "  sent $sent, reported $rep, $(grep -o '[0-9]* dropped by kernel' "$TMP/soak.err"), peak RSS $peak MiB before the stop"
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
