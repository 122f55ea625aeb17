#!/usr/bin/env bash
# Installs what edgemm's demo and tests need: Debian packages (as root) and ./.venv with edgemm
# (editable) plus the compile, opencv and dev extras. Safe to re-run; it skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests and the demo use (real brokers, media, audio daemons):
#   mosquitto                           a real MQTT broker for the sink tests
#   python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good}
#                                       a real RTSP server (run with the system python) for the source tests
#   pulseaudio libportaudio2            a real PulseAudio virtual microphone, read through sounddevice (PortAudio)
APT_PACKAGES=(mosquitto python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
    pulseaudio libportaudio2)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
        exit 1
    fi
    echo "setup: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

bash scripts/fetch_media.sh

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi

# Re-install only when the dependency declarations change.
stamp=.venv/.edgemm-setup
want=$(cat pyproject.toml scripts/constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: pip install -e '.[compile,opencv,mqtt,audio,dev]' (torch pinned by scripts/constraints.txt)"
    if ! .venv/bin/python -m pip install -q --disable-pip-version-check \
        -c scripts/constraints.txt -e ".[compile,opencv,mqtt,audio,dev]" >.venv/pip.log 2>&1; then
        cat .venv/pip.log >&2
        echo "setup: pip install failed (log above)" >&2
        exit 1
    fi
    # Silero VAD's ONNX model needs no torch, but the package declares it: install without dependencies.
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "silero-vad>=5.1" >>.venv/pip.log 2>&1
    .venv/bin/python -c "import edgemm, torch, transformers, onnx, cv2, paho.mqtt, sounddevice, soundfile, soxr, silero_vad" # fail here, not in the tests
    echo "$want" >"$stamp"
fi
