#!/usr/bin/env bash
# Run the real HEAR 2021 validator (PyPI hearvalidator==2021.0.2) on mulap.inference.hear. Not part of the test suite:
# hearvalidator imports TensorFlow, which is no dependency of mulap, so it lives in a throw-away venv.
#
#   tools/hear_validator.sh                      # the default model (supervised_mtt)
#   tools/hear_validator.sh -m path/backbone.safetensors
#   HEAR_VENV=/tmp/hearvenv tools/hear_validator.sh -m supervised_msd
#
# Steps: a venv with tensorflow-cpu + hearvalidator (no deps); mulap's wheel built from this tree and installed
# there with --no-deps; mulap's dependencies (torch, ...) seen through a .pth file pointing at mulap's own venv;
# the validator run from an empty folder, so the source tree is not on sys.path.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MULAP_PY="${MULAP_PYTHON:-$ROOT/.venv/bin/python}"
VENV="${HEAR_VENV:-/tmp/mulap-hear-venv}"
[ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q tensorflow-cpu==2.21.0
"$VENV/bin/python" -m pip install -q --no-deps hearvalidator==2021.0.2
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/src" "$WORK/run"
(cd "$ROOT" && git ls-files -z mulap pyproject.toml README.md | xargs -0 cp --parents -t "$WORK/src")
"$MULAP_PY" -m pip wheel "$WORK/src" --no-deps --no-build-isolation -q -w "$WORK/wheel"
"$VENV/bin/python" -m pip install -q --no-deps --force-reinstall "$WORK"/wheel/mulap-*.whl
DEPS="$("$MULAP_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$DEPS" > "$SITE/zz_mulap_deps.pth"
cd "$WORK/run"
env -u PYTHONPATH "$VENV/bin/hear-validator" mulap.inference.hear "$@"
