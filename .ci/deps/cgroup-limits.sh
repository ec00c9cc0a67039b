# cgroup-limits' kernel tests: a memory hog in Python (python3 comes with python3-venv in the
# base install; made sure of here), `timeout` and `sh` from coreutils/dash (always present).
if ! command -v python3 >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3-minimal >/dev/null
fi
CGROUP_LIMITS_TEST_PYTHON="$(command -v python3)"
export CGROUP_LIMITS_TEST_PYTHON
