#!/bin/bash
# What gc's history costs in store space: the 5,000-file tree (200 MB), 20 syncs that each
# rewrite 50 files (about 2 MB) on the share, then gc with the default retention and with none.
set -e
BIN=$1
TREE=${2:?usage: history-cost.sh CACHESYNC TREE}
W=${WORK:-/var/tmp/histcost}
rm -rf $W; mkdir -p $W/home
cp -a "$TREE" $W/remote
export HOME=$W/home
$BIN clone $W/remote $W/ws -q >/dev/null
cd $W/ws
mapfile -t FILES < <(cd $W/remote && find . -type f ! -name '.cachesync*' | sort)
for round in $(seq 1 20); do
  for i in $(seq 0 49); do
    f=${FILES[$(( (round * 97 + i * 31) % ${#FILES[@]} ))]}
    head -c $(stat -c %s "$W/remote/$f") /dev/urandom > "$W/remote/$f.tmp" && mv "$W/remote/$f.tmp" "$W/remote/$f"
  done
  $BIN sync -q >/dev/null
done
store() { du -sb $W/ws/.cachesync | cut -f1; }
echo "before gc: $(store) bytes"
$BIN gc --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print("gc (keep 20 ops, 7 days):", {k:d[k] for k in d if k in ("files","chunks","snapshots")})'
echo "after gc, history kept: $(store) bytes"
python3 - <<PY
import json
p="$W/ws/.cachesync/config.json"
c=json.load(open(p)); c["keep_operations"]=0; c["keep_operations_days"]=0
json.dump(c,open(p,"w"))
PY
$BIN gc --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print("gc (no history):", {k:d[k] for k in d if k in ("files","chunks","snapshots")})'
echo "after gc, no history: $(store) bytes"
