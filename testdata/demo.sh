#!/usr/bin/env bash
# A guided tour of cachesync: clone a remote, change both sides, sync, see a remote deletion
# arrive, meet a conflict and see that both versions are kept; then lose the share, keep
# working offline, and see the share come back and the offline work go to it; last, the share
# itself as a file system (`cachesync mount`), with the share there and gone.
#
#   testdata/demo.sh PATH/TO/cachesync        (`make demo` builds it and runs this)
#
# The "remote" here is a plain directory standing in for a network share (cachesync reaches
# remotes through ordinary file-system calls only). Everything happens in a fresh temporary
# directory, removed at the end. Any unexpected exit code stops the tour with an error.
set -Eeuo pipefail
trap 'echo "demo: the command above failed (exit $?); the tour stops here" >&2' ERR

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
trap 'fusermount3 -uz "$tmp/view" 2>/dev/null || true; rm -rf "$tmp"' EXIT
remote=$tmp/remote
ws=$tmp/workspace
# clone records each workspace in a registry under XDG_CONFIG_HOME (for `connect --all`): the
# tour's workspace goes in one of its own, removed with it, not in yours.
export XDG_CONFIG_HOME=$tmp/config

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
# Runs cachesync like `cs`, and stops the tour unless it exits with code $1.
cs_exits() {
    local want=$1 rc=0
    shift
    cs "$@" || rc=$?
    [ "$rc" -eq "$want" ] || fail "cachesync $* exited $rc; expected $want"
    note "exit code $want, as expected"
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

step "Status: the local changes; the share as of the last look (status never waits on the network)"
cs status
note "status --refresh looks at the share now, and sees the remote edit:"
cs status --refresh
"$bin" status --json | grep -q '"docs/changelog.md"' \
    || fail "status does not remember the remote edit that status --refresh saw"

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
cs_exits 7 sync
note "7 is ECONFLICTED: the run did everything else, and the conflict waits for you."

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

step "Before leaving: what is cached, and what is not"
note "assets/palette.bin is dropped and gc clears its content from the store: only the share"
note "has it now. docs/guide.md is dropped too, but its content stays in the store."
cs drop assets/palette.bin
cs gc
cs drop docs/guide.md
cs ls assets
cs ls docs

step "The share goes away"
note "As when a share is unmounted: what is left at its mount point is an empty directory."
note "(This remote is a plain directory, so it is moved aside and an empty one left in its place.)"
sh_ "mv '$remote' '$tmp/share-away' && mkdir '$remote'"
cs_exits 3 sync
note "3 is EDISCONNECTED: an empty directory is not the share this workspace was cloned from."
note "It is never taken for 'everything was deleted on the server': nothing was touched."
[ -z "$(ls -A "$remote")" ] || fail "something was written to the empty mount point"
for f in README.md NEWS.md src/wordcount/counting.py docs/changelog.md scripts/check.sh; do
    [ -e "$f" ] || fail "$f was deleted from the workspace while the share was away"
done
echo "every file is still in the workspace; the empty mount point is still empty"

step "Work goes on offline"
cs status
"$bin" status --json | grep -q '"mode": "disconnected"' \
    || fail "status --json does not report the workspace as disconnected"
sh_ "echo 'Written offline, on the train.' >> README.md"
cs status
"$bin" status --json | grep -q '"README.md"' || fail "status does not list the offline edit"
note "A remote-only file whose content is still in the store comes back offline:"
cs get docs/guide.md
cmp docs/guide.md "$tmp/share-away/docs/guide.md" || fail "get brought back other bytes"
note "One whose content only the share has cannot:"
cs_exits 4 get assets/palette.bin
note "4 is EDISCONDATA: the file exists, its content is not cached and the share is away."
[ ! -e assets/palette.bin ] || fail "an uncached file appeared offline"

step "The share comes back"
sh_ "rmdir '$remote' && mv '$tmp/share-away' '$remote'"
note "connect checks that this is the same share (its marker file), switches back and syncs:"
cs connect
grep -q 'Written offline, on the train.' "$remote/README.md" \
    || fail "the offline edit did not reach the share"
echo "the offline edit of README.md is on the share"
"$bin" status --json | grep -q '"mode": "connected"' || fail "status does not say connected"
cs get assets/palette.bin
cmp assets/palette.bin "$remote/assets/palette.bin" || fail "get brought back other bytes"
cs status

step "The share itself, as a file system: cachesync mount"
sh_ "mkdir '$tmp/view'"
cs mount "$tmp/view"
note "The view shows the whole tree, remote-only files included, with their listed sizes:"
cs drop assets/palette.bin
cs gc
sh_ "ls -l '$tmp/view/assets'"
sh_ "getfattr --absolute-names --only-values -n user.cachesync.state '$tmp/view/assets/palette.bin'; echo"
note "Opening a remote-only file fetches it, just in time:"
sh_ "cmp '$tmp/view/assets/palette.bin' '$remote/assets/palette.bin' && echo same bytes as the share"
cs drop docs/guide.md
cs gc
note "The share goes away again; the view goes on:"
sh_ "mv '$remote' '$tmp/share-away' && mkdir '$remote'"
sh_ "head -1 '$tmp/view/README.md'"
note "A file whose content only the share has fails at once, with ENODATA (EDISCONDATA):"
rc=0
sh_ "cat '$tmp/view/docs/guide.md'" || rc=$?
[ "$rc" -ne 0 ] || fail "an uncached file read offline through the view"
sh_ "echo 'Made in the view, offline.' > '$tmp/view/view-notes.txt'"
sh_ "getfattr --absolute-names --only-values -n user.cachesync.state '$tmp/view/view-notes.txt'; echo"
note "The share comes back; a sync (any command works beside the view) sends the new file:"
sh_ "rmdir '$remote' && mv '$tmp/share-away' '$remote'"
cs sync
grep -q 'Made in the view, offline.' "$remote/view-notes.txt" \
    || fail "the file made in the view did not reach the share"
sh_ "getfattr --absolute-names --only-values -n user.cachesync.state '$tmp/view/view-notes.txt'; echo"
cs umount "$tmp/view"

step "The journal: every command, the switch to offline and back, and the offline changes"
cs log

printf '\n%sTour done.%s\n' "$bold" "$off"
