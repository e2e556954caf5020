#!/usr/bin/env bash
# Builds a small, realistic project tree in DEST: the "remote" of the demo and of scenario
# tests. Everything is deterministic (content, modes, mtimes), whatever the umask.
#
#   testdata/make-sample-remote.sh DEST     (DEST must be absent or empty)
#
# The tree: text files at several depths, an executable script, a symlink, an empty
# directory, a nested subdirectory and a small binary file (all 256 byte values).
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 DEST" >&2
    exit 2
fi
dest=$1
if [ -e "$dest" ] && [ -n "$(ls -A "$dest")" ]; then
    echo "$0: $dest is not empty; give a new or empty directory" >&2
    exit 1
fi
umask 022
mkdir -p "$dest"
cd "$dest"

mkdir -p src/wordcount docs scripts assets build

cat > README.md <<'EOF'
# wordcount

Counts lines, words and characters in text files, like `wc`, with a summary per
directory.

    python3 -m wordcount docs/

See docs/guide.md for the options and docs/changelog.md for what changed.
EOF

cat > src/wordcount/__init__.py <<'EOF'
"""wordcount: count lines, words and characters."""

__version__ = "0.3.0"
EOF

cat > src/wordcount/__main__.py <<'EOF'
import sys

from .counting import count_file, format_row


def main(argv):
    total = [0, 0, 0]
    for path in argv[1:]:
        lines, words, chars = count_file(path)
        total = [total[0] + lines, total[1] + words, total[2] + chars]
        print(format_row(lines, words, chars, path))
    if len(argv) > 2:
        print(format_row(*total, "total"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
EOF

cat > src/wordcount/counting.py <<'EOF'
def count_text(text):
    """Return (lines, words, characters) of a string."""
    return text.count("\n"), len(text.split()), len(text)


def count_file(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return count_text(f.read())


def format_row(lines, words, chars, name):
    return f"{lines:8d} {words:8d} {chars:8d} {name}"
EOF

cat > src/wordcount/old_parser.py <<'EOF'
# Superseded by counting.py; kept until the 0.4 release.
def parse(text):
    return text.split()
EOF

cat > docs/guide.md <<'EOF'
# User guide

## Usage

    python3 -m wordcount FILE...

Prints one row per file (lines, words, characters, name) and a total row when
given more than one file.

## Encoding

Files are read as UTF-8; undecodable bytes count as one character each.
EOF

cat > docs/changelog.md <<'EOF'
# Changelog

## 0.3.0
- Total row when counting several files.

## 0.2.0
- Count characters, not bytes.

## 0.1.0
- First release.
EOF

cat > scripts/check.sh <<'EOF'
#!/bin/sh
# Counts the project's own docs: a quick smoke test.
set -e
cd "$(dirname "$0")/.."
PYTHONPATH=src python3 -m wordcount README.md docs/*.md
EOF

# A small binary file: the 256 byte values in order.
for i in $(seq 0 255); do
    printf "\\$(printf '%03o' "$i")"
done > assets/palette.bin

ln -s docs/changelog.md NEWS.md

chmod 0644 README.md src/wordcount/*.py docs/*.md assets/palette.bin
chmod 0755 . scripts/check.sh src src/wordcount docs scripts assets build
# One fixed time for everything (symlinks included), so trees made twice are identical.
find . -mindepth 1 -exec touch -h -d '2026-01-15 09:30:00 UTC' {} +
touch -d '2026-01-15 09:30:00 UTC' .
