#!/usr/bin/env bash
# Builds the render worker's image (see Dockerfile): wheels of the project and of every
# dependency at the versions of requirements.lock, built on the host into build/image/, then
# `docker build`. Usage: deploy/docker/build-image.sh IMAGE BASE_IMAGE PIP
# BASE_IMAGE render-assets-base:* is built from Debian's packages when missing (base-image.sh).
set -euo pipefail
image=${1:?usage: $0 IMAGE BASE_IMAGE PIP}
base=${2:?usage: $0 IMAGE BASE_IMAGE PIP}
pip=${3:?usage: $0 IMAGE BASE_IMAGE PIP}
cd "$(dirname "$0")/../.."

if [[ $base == render-assets-base:* ]] && ! docker image inspect "$base" >/dev/null 2>&1; then
  deploy/docker/base-image.sh "$base"
fi

# The dependencies' wheels (runtime only, at the lock's versions) are rebuilt when the lock or
# pyproject.toml changed since the last build (pip's cache makes a rebuild a download-free copy).
deps_key=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ $(cat build/image/deps.key 2>/dev/null) != "$deps_key" ]]; then
  rm -rf build/image/deps && mkdir -p build/image/deps
  "$pip" wheel --quiet --constraint requirements.lock --wheel-dir build/image/deps '.[deploy]'
  rm build/image/deps/render_assets-*.whl
  echo "$deps_key" > build/image/deps.key
fi
rm -rf build/image/app && mkdir -p build/image/app
"$pip" wheel --quiet --no-deps --wheel-dir build/image/app .
# The legacy builder: this engine has no BuildKit plugin, and the Dockerfile needs nothing newer.
DOCKER_BUILDKIT=0 docker build --quiet --build-arg "BASE_IMAGE=$base" --tag "$image" . >/dev/null
echo "built $image on $base"
