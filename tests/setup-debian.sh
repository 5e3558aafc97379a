#!/bin/sh
# Installs the Debian packages the tests need, only those whose Python modules /usr/bin/python3
# cannot already import. The tests always call /usr/bin/python3: Debian's packages install for it,
# not for a pyenv/conda python on PATH.
#   - reference tests: h5py, scikit-learn, PyTorch with a threaded OpenBLAS;
#   - notebook tests (tests/notebooks_test.ts): nbconvert and nbclient, which execute notebooks/*.ipynb
#     headless with the Deno kernel. The kernelspec itself is installed by that test, into a temporary
#     directory, for the very deno binary that runs the tests (`deno jupyter --install`).
#   - native matmuls (tests/blas_test.ts): OpenBLAS's pthread build at the path the tasks grant, checked
#     on its own since torch may have come with another BLAS flavour.
#   - cross-engine reference (tests/mujoco_reference_test.ts): MuJoCo 2.2.2's headers and library, which
#     a small C driver is built against with gcc (the Node image ships gcc).
set -eu
REFERENCE_PACKAGES="python3-h5py python3-sklearn python3-torch libopenblas0-pthread"
OPENBLAS=/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0
NOTEBOOK_PACKAGES="jupyter-nbconvert python3-nbclient"
MUJOCO_PACKAGES="libmujoco-dev"

imports() { [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import $1" 2>/dev/null; }

PACKAGES=""
imports "h5py, sklearn, torch" || PACKAGES="$REFERENCE_PACKAGES"
imports "nbconvert, nbclient, jupyter_client" || PACKAGES="$PACKAGES $NOTEBOOK_PACKAGES"
# x86_64 only: elsewhere the BLAS tests name the path they miss.
if [ "$(uname -m)" = x86_64 ] && [ ! -e "$OPENBLAS" ]; then
  case " $PACKAGES " in *" libopenblas0-pthread "*) ;; *) PACKAGES="$PACKAGES libopenblas0-pthread" ;; esac
fi
[ -f /usr/include/mujoco/mujoco.h ] || PACKAGES="$PACKAGES $MUJOCO_PACKAGES"
# Unquoted on purpose: word splitting trims the list.
PACKAGES=$(echo $PACKAGES)
if [ -z "$PACKAGES" ]; then
  exit 0
fi
echo "setup: installing Debian packages for the tests: $PACKAGES"
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
  command -v sudo >/dev/null || { echo "setup: run as root or install: apt-get install $PACKAGES" >&2; exit 1; }
else
  SUDO=
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
/usr/bin/python3 -c "import h5py, sklearn, torch; print('setup: h5py', h5py.__version__, 'sklearn', sklearn.__version__, 'torch', torch.__version__)"
/usr/bin/python3 -c "import nbconvert, nbclient; print('setup: nbconvert', nbconvert.__version__, 'nbclient', nbclient.__version__)"
if [ -f /usr/include/mujoco/mujoco.h ]; then
  echo "setup: MuJoCo $(sed -n 's/^#define mjVERSION_HEADER //p' /usr/include/mujoco/mujoco.h) headers"
fi
