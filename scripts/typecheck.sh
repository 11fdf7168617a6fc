#!/usr/bin/env bash
# mypy over the package as it installs: scanner/, server/, training/ and migrations/ are
# ldmscan.scanner, ... only through setuptools' package-dir mapping, which mypy cannot follow
# in an editable install, so it checks a tree of symlinks laid out like site-packages.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/ldmscan"
for entry in ldmscan/*; do ln -s "$repo/$entry" "$stage/ldmscan/"; done
for part in scanner server training migrations; do ln -s "$repo/$part" "$stage/ldmscan/$part"; done
cd "$stage" && "$repo/.venv/bin/mypy" --config-file "$repo/pyproject.toml" -p ldmscan "$@"
