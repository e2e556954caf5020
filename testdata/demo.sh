#!/usr/bin/env bash
# A guided tour of cachesync: clone a remote, change both sides, sync, see a remote deletion
# arrive, then meet a conflict and see that both versions are kept.
#
#   testdata/demo.sh PATH/TO/cachesync        (`make demo` builds it and runs this)
#
# The "remote" here is a plain directory standing in for a network share (cachesync reaches
# remotes through ordinary file-system calls only). Everything happens in a fresh temporary
# directory, removed at the end. Any unexpected exit code stops the tour with an error.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 PATH/TO/cachesync" >&2
    exit 2
fi
if [ ! -x "$1" ]; then
    echo "demo: $1 is not an executable; build it first (make build)" >&2
    exit 1
fi
bin=$(realpath "$1")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cachesync-demo.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
remote=$tmp/remote
ws=$tmp/workspace

if [ -t 1 ]; then bold=$'\e[1m' dim=$'\e[2m' off=$'\e[0m'; else bold='' dim='' off=''; fi
n=0
step() {
    n=$((n + 1))
    printf '\n%s== %d. %s%s\n' "$bold" "$n" "$*" "$off"
}
note() { printf '%s# %s%s\n' "$dim" "$*" "$off"; }
# Runs cachesync, echoing the command line first.
cs() {
    printf '$ cachesync %s\n' "$*"
    "$bin" "$@"
}
# Runs a shell command line, echoing it first.
sh_() {
    printf '$ %s\n' "$*"
    bash -c "$*"
}
fail() {
    echo "demo: $*" >&2
    exit 1
}

step "A remote: a small project on a share (here: $remote)"
bash "$here/make-sample-remote.sh" "$remote"
(cd "$remote" && find . | sort)

step "Clone it into a workspace"
cs clone "$remote" "$ws"
cd "$ws"
note "cachesync finds the workspace from the current directory, like git."

step "Status right after the clone: clean"
cs status

step "Work on both sides: a local edit and a new file, and a remote edit"
sh_ "echo 'Run scripts/check.sh for a quick smoke test.' >> README.md"
sh_ "printf '# TODO\n\n- count bytes as well as characters\n' > TODO.md"
note "Meanwhile someone edits a file on the share itself:"
sh_ "echo '- Faster counting of large files.' >> '$remote/docs/changelog.md'"

step "Status: local changes, and what changed on the remote"
cs status

step "Sync: pull the remote edit, push the local ones"
cs sync

step "Both sides now agree (cachesync's own files aside)"
sh_ "diff -r --no-dereference --exclude=.cachesync --exclude=.cachesync-remote '$remote' '$ws' \
&& echo 'remote and workspace are identical'"

step "A file is deleted on the remote"
sh_ "rm '$remote/src/wordcount/old_parser.py'"
cs sync
[ ! -e src/wordcount/old_parser.py ] || fail "the remote deletion was not pulled"
echo "src/wordcount/old_parser.py is gone from the workspace too"

step "The same line edited differently on both sides: a conflict"
sh_ "sed -i 's/{lines:8d} {words:8d} {chars:8d} {name}/{name}: {lines} {words} {chars}/' \
src/wordcount/counting.py"
sh_ "sed -i 's/{lines:8d} {words:8d} {chars:8d} {name}/{lines:>8} {words:>8} {chars:>8}  {name}/' \
'$remote/src/wordcount/counting.py'"
cp src/wordcount/counting.py "$tmp/client-version"
cp "$remote/src/wordcount/counting.py" "$tmp/server-version"
rc=0
cs sync || rc=$?
[ "$rc" -eq 7 ] || fail "cachesync sync exited $rc; expected 7 (ECONFLICTED)"
note "exit code 7: ECONFLICTED, as expected"

step "Status and the conflict list show it"
cs status
cs conflicts

step "Nothing is lost: the local file is untouched and both versions are in the store"
cmp src/wordcount/counting.py "$tmp/client-version" || fail "the local file was changed"
echo "local file unchanged"
cmp "$remote/src/wordcount/counting.py" "$tmp/server-version" || fail "the remote file was changed"
echo "remote file unchanged"
for variant in server client; do
    printf '$ cachesync show src/wordcount/counting.py --variant %s | grep "return f"\n' "$variant"
    "$bin" show src/wordcount/counting.py --variant "$variant" | grep 'return f'
done
"$bin" show src/wordcount/counting.py --variant server | cmp - "$tmp/server-version" \
    || fail "the server variant differs from the remote's file"
"$bin" show src/wordcount/counting.py --variant client | cmp - "$tmp/client-version" \
    || fail "the client variant differs from the local file"

step "Settle it: take the server's version, and sync"
cs diff --variant server --variant client src/wordcount/counting.py
cs resolve src/wordcount/counting.py --take server
cs sync
cmp src/wordcount/counting.py "$tmp/server-version" || fail "the resolution was not applied"
note "Your version is still kept: cachesync show src/wordcount/counting.py --variant client"

step "Edits in different places of one file are merged"
sh_ "sed -i '1s/^/# Counting words, lines and characters.\\n/' src/wordcount/counting.py"
sh_ "echo '# end of counting.py' >> '$remote/src/wordcount/counting.py'"
cs sync
head -1 "$remote/src/wordcount/counting.py" | grep -q '^# Counting' || fail "the local edit was not merged"
tail -1 src/wordcount/counting.py | grep -q '^# end of counting.py' || fail "the remote edit was not merged"
note "Both edits are on both sides."

step "Keep a file on the server only, and bring it back"
cs drop assets/palette.bin
[ ! -e assets/palette.bin ] || fail "the dropped file is still here"
cs ls assets
cs sync
[ -e "$remote/assets/palette.bin" ] || fail "a dropped file was deleted on the server"
cs get assets/palette.bin
cmp assets/palette.bin "$remote/assets/palette.bin" || fail "get brought back other bytes"
note "A dropped file is remote-only: listed, never taken for a deletion, fetched on demand."

step "The journal"
cs log

printf '\n%sTour done.%s\n' "$bold" "$off"
