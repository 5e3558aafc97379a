#!/bin/sh
# Installs the Debian packages the reference tests compare against (h5py, scikit-learn, PyTorch with
# a threaded OpenBLAS), only when /usr/bin/python3 cannot already import them. The tests always call
# /usr/bin/python3: Debian's packages install for it, not for a pyenv/conda python on PATH.
set -eu
PACKAGES="python3-h5py python3-sklearn python3-torch libopenblas0-pthread"
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import h5py, sklearn, torch" 2>/dev/null; then
  exit 0
fi
echo "setup: installing Debian packages for the reference tests: $PACKAGES"
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
  command -v sudo >/dev/null || { echo "setup: run as root or install: apt-get install $PACKAGES" >&2; exit 1; }
else
  SUDO=
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
/usr/bin/python3 -c "import h5py, sklearn, torch; print('setup: h5py', h5py.__version__, 'sklearn', sklearn.__version__, 'torch', torch.__version__)"
