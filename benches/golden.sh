#!/bin/bash
# Every fixture and conformance trace through one hcleak binary in every output format, so a
# refactor can be checked byte for byte against the binary from before it:
#   bash benches/golden.sh OLD_BIN /tmp/before; bash benches/golden.sh target/release/hcleak /tmp/after
#   diff -r /tmp/before /tmp/after     # prints nothing when nothing changed
set -u
BIN=$(realpath "${1:?usage: golden.sh HCLEAK_BINARY OUTDIR}"); OUT=${2:?usage: golden.sh HCLEAK_BINARY OUTDIR}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"; OUT=$(realpath "$OUT")
for f in fixtures/*.pcap fixtures/*.pcapng fixtures/diag/*.pcap ../shared/conformance/zeek/*.pcap; do
  [ -e "$f" ] || continue
  n=$(echo "$f" | tr '/' '_')
  s=${f%.pcap}.sockets.csv; extra=()
  [ -f "$s" ] && extra=(--sockets "$s")
  for fmt in table json prometheus nagios; do
    "$BIN" analyze "$f" "${extra[@]}" --format $fmt >"$OUT/$n.$fmt" 2>"$OUT/$n.$fmt.err"; echo "rc=$?" >>"$OUT/$n.$fmt.err"
  done
  "$BIN" analyze "$f" --flows --format tsv >"$OUT/$n.flows.tsv" 2>&1; echo "rc=$?" >>"$OUT/$n.flows.tsv"
  "$BIN" analyze "$f" --format zeek >"$OUT/$n.zeek" 2>&1; echo "rc=$?" >>"$OUT/$n.zeek"
done
echo "$(ls "$OUT" | wc -l) outputs in $OUT"
