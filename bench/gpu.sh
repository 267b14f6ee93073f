#!/usr/bin/env bash
# The GPU check (bench/gpu.py): run on a lent NVIDIA machine, at most about 8 minutes, one JSON of results.
#   bench/gpu.sh --out gpu.json     the full check
#   bench/gpu.sh --tiny             small shapes on any device, in seconds (CI runs this)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python}"
if [ -x "$here/../.venv/bin/python" ] && [ -z "${PYTHON:-}" ]; then python="$here/../.venv/bin/python"; fi
exec "$python" "$here/gpu.py" "$@"
