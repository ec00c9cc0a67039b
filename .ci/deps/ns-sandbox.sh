# ns-sandbox / sandbox-run tests and the sandbox_vs_bwrap bench: setpriv (util-linux) runs the
# rootless variants as uid 65534, the system python3 (/usr/bin/python3) runs the seccomp and
# network probes under --profile python, bubblewrap is the bench's peer.
need=()
for pkg in util-linux python3 bubblewrap; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if ((${#need[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
