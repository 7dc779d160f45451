"""Stand-in for pip's get-pip.py bootstrap script, for ansible-test's own virtual environments.

ansible-test downloads get-pip.py from a host outside the package index, which this project's
machines cannot reach. This script does the same job with what is reachable: pip from the
interpreter's ensurepip, then the requested pip version from the package index.
It takes get-pip's arguments: pip install arguments plus --no-setuptools / --no-wheel.
"""
import ensurepip
import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

ensurepip.bootstrap(upgrade=True)
arguments = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", *arguments]))
