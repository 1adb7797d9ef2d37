#!/usr/bin/env bash
# A Debian bookworm image with Python 3.11, built from Debian's packages with debootstrap, for a
# machine that reaches a Debian mirror but no container registry (pass it to the Dockerfile as
# BASE_IMAGE). The mirror is the machine's own apt source, read here, never written in the repo.
# Usage: deploy/docker/base-image.sh IMAGE_NAME   (as root: debootstrap needs it; about 2 minutes)
set -euo pipefail
name=${1:?usage: $0 IMAGE_NAME}
suite=bookworm

# The first apt source serving the suite: deb822 stanzas (*.sources), else one-line sources.list.
mirror=$(awk -v suite="$suite" 'BEGIN { RS = "" }
  { uri = ""; serves = 0
    for (i = 1; i <= NF; i++) {
      if ($i == "URIs:") uri = $(i + 1)
      if ($i == "Suites:") for (j = i + 1; j <= NF && $j !~ /:$/; j++) if ($j == suite) serves = 1
    }
    if (serves && uri != "") { print uri; exit } }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(sed -E 's/\[[^]]*\]//' /etc/apt/sources.list | awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2; exit }')
fi
[ -n "$mirror" ] || { echo "no apt source for $suite in /etc/apt: pass BASE_IMAGE instead" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# python3-venv brings ensurepip (the image's virtualenv gets pip from it, offline).
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$suite" "$root" "$mirror" >/dev/null
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*
tar -C "$root" -c . | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$name" >/dev/null
echo "built $name from $mirror"
