# manager's tests: a real ansible-vault (ansible-core from PyPI) reads a vault password from our FIFO.
ansible_venv=.ci/cache/ansible-venv
if [[ ! -x $ansible_venv/bin/ansible-vault ]]; then
  python3 -m venv "$ansible_venv"
  "$ansible_venv/bin/pip" install --quiet --disable-pip-version-check 'ansible-core>=2.15,<2.19'
fi
export MANAGER_TEST_ANSIBLE_VAULT="$PWD/$ansible_venv/bin/ansible-vault"
