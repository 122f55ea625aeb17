#!/usr/bin/env bash
# Fetches the real media the tests use from Debian packages, without installing them:
# `apt-get download` + `dpkg -x` into .cache/media/<package>/ (ignored by git). Safe to re-run.
#   opencv-doc               photos (fruits.jpg, baboon.jpg, ...) and videos (vtest.avi)
#   sound-theme-freedesktop  event sounds (bell.oga, alarm-clock-elapsed.oga, ...; Ogg Vorbis, 8-96 kHz)
#   pocketsphinx-testdata    LibriVox speech clips (16 kHz WAV/raw) with their transcripts
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(opencv-doc sound-theme-freedesktop pocketsphinx-testdata)

mkdir -p .cache/debs .cache/media
for pkg in "${PACKAGES[@]}"; do
    [ -f ".cache/media/$pkg/.done" ] && continue
    if ! apt-cache show "$pkg" >/dev/null 2>&1; then
        apt-get update -qq
    fi
    echo "fetch_media: $pkg"
    (cd .cache/debs && apt-get download -q "$pkg" 2>&1 | grep -v "^W: Download is performed unsandboxed" || true)
    deb=$(ls .cache/debs/"${pkg}"_*.deb | head -n 1)
    rm -rf ".cache/media/$pkg"
    dpkg -x "$deb" ".cache/media/$pkg"
    rm -f "$deb"
    touch ".cache/media/$pkg/.done"
done
