#!/usr/bin/python3
"""A stand-in for Tailscale's `tailscale` and `tailscaled` (1.96.x), for tests only.

Which one it is depends on the name it is run as (argv[0] ending in `tailscaled` or not).
It reproduces the behaviour documented in shared/tailscale-facts.md: Go-style flags, the
LocalAPI socket, the exact CLI messages and exit codes, `status --json` shapes and BackendState
transitions, the login-URL flow, and a real SOCKS5 (and HTTP CONNECT) proxy. Where a behaviour is
not documented it fails loudly (exit 99) instead of guessing.

The "control server" is a JSON file named by $TAILNET_SIM_CONTROL in the daemon's environment:
  {"style": "tailscale" | "tailscale-verbose" | "headscale",
   "keys": {"<key>": "valid" | "invalid" | "expired" | "single-use"},
   "login_url": "https://login.example.invalid/a/123" | null,   # offered when up has no key
   "interactive_login_after": 1.0 | null,   # seconds until a shown login URL is "completed"
   "unreachable": false,                    # true: logins never complete (like no control)
   "validate_delay": 0.0,                   # seconds the CLI holds the key before answering
   "machine_auth_pending": false}           # true: a logged-in node reports NeedsMachineAuth
                                            # (status only; `up` in that state is not simulated)
Single-use keys are remembered as used in "<control file>.used". Keys never reach any log.
"""
import json
import os
import select
import signal
import socket
import socketserver
import struct
import sys
import threading
import time

VERSION = "1.96.4-sim"
DAEMON_DOWN = ("failed to connect to local tailscaled; it doesn't appear to be running "
               "(sudo systemctl start tailscaled ?)")
UP_TIMEOUT = ('timeout waiting for Tailscale service to enter a Running state; '
              'check health with "tailscale status"')


def loud(msg):
    sys.stderr.write(f"tailscale-sim: unsupported: {msg}\n")
    sys.exit(99)


def go_duration(text):
    """Go's time.ParseDuration for the forms used here (e.g. 5s, 1500ms, 1m30s, 0s)."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    if text == "0":
        return 0.0
    total, num, i = 0.0, "", 0
    if not text:
        raise ValueError(text)
    while i < len(text):
        c = text[i]
        if c.isdigit() or c == ".":
            num += c
            i += 1
            continue
        unit = ""
        while i < len(text) and not (text[i].isdigit() or text[i] == "."):
            unit += text[i]
            i += 1
        if not num or unit not in units:
            raise ValueError(text)
        total += float(num) * units[unit]
        num = ""
    if num:
        raise ValueError(text)
    return total


def parse_flags(args, bool_flags, value_flags, prog):
    """Go flag package: -f, --f, -f=v, --f=v, -f v (non-bool); stops at the first non-flag."""
    out, rest, i = {}, [], 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest = args[i + 1:]
            break
        if not a.startswith("-") or a == "-":
            rest = args[i:]
            break
        name = a.lstrip("-")
        value = None
        if "=" in name:
            name, value = name.split("=", 1)
        if name in bool_flags:
            out[name] = value if value is not None else "true"
        elif name in value_flags:
            if value is None:
                i += 1
                if i >= len(args):
                    sys.stderr.write(f"flag needs an argument: -{name}\n")
                    sys.exit(2)
                value = args[i]
            out[name] = value
        else:
            sys.stderr.write(f"flag provided but not defined: -{name}\nUsage of {prog}:\n")
            sys.exit(2)
        i += 1
    return out, rest


# ---------------------------------------------------------------- daemon

class Daemon:
    def __init__(self, state_path, control_path):
        self.lock = threading.Lock()
        self.state_path = state_path
        self.control_path = control_path
        self.logged_in = False
        self.want_running = False
        self.hostname = socket.gethostname()
        self.node_index = 1
        self.auth_url = ""
        if state_path and not state_path.startswith("mem:") and os.path.exists(state_path):
            with open(state_path) as f:
                saved = json.load(f)
            self.logged_in = saved.get("logged_in", False)
            self.want_running = saved.get("want_running", False)
            self.hostname = saved.get("hostname", self.hostname)

    def control(self):
        if not self.control_path:
            return {"keys": {}, "unreachable": True}
        with open(self.control_path) as f:
            return json.load(f)

    def used_keys(self):
        try:
            with open(self.control_path + ".used") as f:
                return set(json.load(f))
        except FileNotFoundError:
            return set()

    def mark_used(self, key):
        used = self.used_keys()
        used.add(key)
        with open(self.control_path + ".used", "w") as f:
            json.dump(sorted(used), f)

    def save(self):
        if self.state_path and not self.state_path.startswith("mem:"):
            tmp = self.state_path + ".tmp"
            with open(tmp, "w") as f:  # the node's login, never the auth key
                json.dump({"logged_in": self.logged_in, "want_running": self.want_running,
                           "hostname": self.hostname}, f)
            os.chmod(tmp, 0o600)
            os.rename(tmp, self.state_path)

    def backend_state(self):
        if not self.logged_in:
            return "NeedsLogin"
        if self.control().get("machine_auth_pending"):
            return "NeedsMachineAuth"
        return "Running" if self.want_running else "Stopped"

    def status(self):
        state = self.backend_state()
        running = state == "Running"
        ips = [f"100.64.0.{self.node_index}", f"fd7a:115c:a1e0::{self.node_index}"] if self.logged_in else None
        return {
            "Version": VERSION,
            "TUN": False,
            "BackendState": state,
            "AuthURL": self.auth_url,
            "TailscaleIPs": ips,
            "Self": {
                "ID": "n1" if self.logged_in else "",
                "PublicKey": "nodekey:" + "0" * 64,
                "HostName": self.hostname,
                "DNSName": f"{self.hostname}.tail-sim.ts.net." if self.logged_in else "",
                "OS": "linux",
                "TailscaleIPs": ips,
                "Online": running,
            },
            "Health": [] if running else ["Tailscale is stopped."] if self.logged_in else [],
            "MagicDNSSuffix": "tail-sim.ts.net" if self.logged_in else "",
            "CurrentTailnet": None,
            "Peer": {} if running else None,
            "User": None,
        }

    def key_error(self, verdict, key, style):
        if style == "headscale":
            return {"invalid": "invalid authkey", "expired": "authkey expired",
                    "used": "authkey already used"}[verdict]
        if style == "tailscale-verbose" and verdict == "used":
            return f"invalid key: API key {key} not valid"
        return "invalid key: API key does not exist"

    def up(self, req, send):
        ctl = self.control()
        style = ctl.get("style", "tailscale")
        key = req.get("authkey")
        if self.backend_state() == "NeedsMachineAuth":
            loud("tailscale up while NeedsMachineAuth (real behaviour not documented)")
        with self.lock:
            if self.logged_in and req.get("hostname") and req["hostname"] != self.hostname \
                    and not req.get("reset"):
                send({"error": "changing settings via 'tailscale up' requires mentioning all "
                      "non-default flags. To proceed, either re-run your command with --reset "
                      "or use the command below to make sure you're not changing any settings:"
                      f"\n\n\ttailscale up --hostname={self.hostname}\n"})
                return
            if req.get("hostname"):
                self.hostname = req["hostname"]
            if self.logged_in:
                self.want_running = True
                self.save()
                send({"result": "ok"})
                return
        deadline = None if not req.get("timeout") else time.monotonic() + req["timeout"]
        if key is not None:
            time.sleep(float(ctl.get("validate_delay", 0.0)))
            if ctl.get("unreachable"):
                self.wait_until(deadline, send)
                return
            verdict = ctl.get("keys", {}).get(key, "invalid")
            if verdict == "single-use":
                verdict = "used" if key in self.used_keys() else "valid"
                if verdict == "valid":
                    self.mark_used(key)
            if verdict != "valid":
                send({"error": "backend error: " + self.key_error(verdict, key, style)})
                return
            with self.lock:
                self.logged_in, self.want_running = True, True
                self.save()
            send({"result": "ok"})
            return
        url = ctl.get("login_url")
        if not url or ctl.get("unreachable"):
            self.wait_until(deadline, send)
            return
        with self.lock:
            self.auth_url = url
        send({"event": "url", "url": url})
        after = ctl.get("interactive_login_after")
        if after is None or (deadline is not None and time.monotonic() + after > deadline):
            self.wait_until(deadline, send)
            return
        time.sleep(after)
        with self.lock:
            self.auth_url = ""
            self.logged_in, self.want_running = True, True
            self.save()
        send({"result": "ok", "success": True})

    def wait_until(self, deadline, send):
        if deadline is None:
            while True:
                time.sleep(3600)
        time.sleep(max(0.0, deadline - time.monotonic()))
        send({"error": UP_TIMEOUT, "plain": True})

    def down(self):
        with self.lock:
            self.want_running = False
            self.save()


class LocalApi(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline(1 << 20)
        if not line:
            return
        req = json.loads(line)

        def send(obj):
            self.wfile.write((json.dumps(obj) + "\n").encode())
            self.wfile.flush()
        daemon = self.server.daemon
        op = req.get("op")
        sys.stderr.write(f"localapi: {op}\n")  # never the request body: it may hold a key
        if op == "status":
            send(daemon.status())
        elif op == "up":
            daemon.up(req, send)
        elif op == "down":
            daemon.down()
            send({"result": "ok"})
        else:
            send({"error": f"tailscale-sim: unsupported LocalAPI op {op!r}"})


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class ProxyServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def relay(a, b):
    socks = [a, b]
    try:
        while True:
            readable, _, _ = select.select(socks, [], [], 300)
            if not readable:
                return
            for s in readable:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    finally:
        a.close()
        b.close()


class Proxy(socketserver.BaseRequestHandler):
    """SOCKS5 (no auth, CONNECT) and, sniffed on the same port, HTTP CONNECT."""

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.request.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("short read")
            buf += chunk
        return buf

    def handle(self):
        conn = self.request
        first = conn.recv(1, socket.MSG_PEEK)
        if not first:
            return
        if first == b"\x05":
            self.socks5()
        else:
            self.http_connect()

    def socks5(self):
        conn = self.request
        _, nmethods = self.recv_exact(2)
        methods = self.recv_exact(nmethods)
        if 0 not in methods:
            conn.sendall(b"\x05\xff")
            return
        conn.sendall(b"\x05\x00")
        ver, cmd, _, atyp = self.recv_exact(4)
        if atyp == 1:
            host = socket.inet_ntop(socket.AF_INET, self.recv_exact(4))
        elif atyp == 4:
            host = socket.inet_ntop(socket.AF_INET6, self.recv_exact(16))
        elif atyp == 3:
            host = self.recv_exact(self.recv_exact(1)[0]).decode()
        else:
            conn.sendall(b"\x05\x08\x00\x01" + b"\0" * 6)
            return
        (port,) = struct.unpack("!H", self.recv_exact(2))
        if ver != 5 or cmd != 1:
            conn.sendall(b"\x05\x07\x00\x01" + b"\0" * 6)
            return
        try:
            upstream = socket.create_connection((host, port), timeout=10)
        except OSError:
            conn.sendall(b"\x05\x05\x00\x01" + b"\0" * 6)
            return
        upstream.settimeout(None)
        conn.sendall(b"\x05\x00\x00\x01" + b"\0" * 6)
        relay(conn, upstream)

    def http_connect(self):
        conn = self.request
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 8192:
            chunk = conn.recv(1024)
            if not chunk:
                return
            head += chunk
        request_line = head.split(b"\r\n", 1)[0].decode(errors="replace").split()
        if len(request_line) < 2 or request_line[0] != "CONNECT":
            conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            return
        host, _, port = request_line[1].rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except (OSError, ValueError):
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
        relay(conn, upstream)


def split_addr(addr):
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def tailscaled(args):
    flags, rest = parse_flags(
        args, {"no-logs-no-support", "verbose"},
        {"tun", "socks5-server", "outbound-http-proxy-listen", "state", "statedir", "socket",
         "port"}, "tailscaled")
    if rest:
        loud(f"tailscaled arguments {rest}")
    if flags.get("tun") != "userspace-networking" and not os.path.exists("/dev/net/tun"):
        sys.stderr.write('CreateTUN("tailscale0") failed; /dev/net/tun does not exist\n')
        sys.exit(1)
    if flags.get("tun") != "userspace-networking":
        loud("kernel TUN mode")
    sock_path = flags.get("socket", "/var/run/tailscale/tailscaled.sock")
    if os.path.exists(sock_path):
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(sock_path)
            sys.stderr.write(f"safesocket.Listen: {sock_path}: address already in use\n")
            sys.exit(1)
        except OSError:
            os.unlink(sock_path)
        finally:
            probe.close()
    state = flags.get("state") or (os.path.join(flags["statedir"], "tailscaled.state")
                                   if "statedir" in flags else None)
    daemon = Daemon(state, os.environ.get("TAILNET_SIM_CONTROL"))
    proxies = []
    addrs = []
    for name in ("socks5-server", "outbound-http-proxy-listen"):
        if name in flags and flags[name] not in addrs:
            addrs.append(flags[name])
    for addr in addrs:
        server = ProxyServer(split_addr(addr), Proxy)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        proxies.append(server)
        sys.stderr.write(f"proxy listening on {addr}\n")
    server = UnixServer(sock_path, LocalApi)
    server.daemon = daemon
    os.chmod(sock_path, 0o600)

    def stop(signum, _frame):
        sys.stderr.write(f"tailscaled got signal {signal.Signals(signum).name.lower()}; shutting down\n")
        try:
            os.unlink(sock_path)
        except OSError:
            pass
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stderr.write(f"tailscaled (simulated {VERSION}) listening on {sock_path}\n")
    sys.stderr.flush()
    server.serve_forever()


# ---------------------------------------------------------------- CLI

def connect(sock_path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(sock_path)
    except OSError:
        sys.stderr.write(DAEMON_DOWN + "\n")
        sys.exit(1)
    return s


def call(sock_path, req):
    s = connect(sock_path)
    s.sendall((json.dumps(req) + "\n").encode())
    return s.makefile("r")


UP_BOOL = {"accept-dns", "accept-routes", "reset", "force-reauth", "json", "qr", "shields-up",
           "ssh", "advertise-exit-node", "advertise-connector"}
UP_VALUE = {"auth-key", "authkey", "hostname", "login-server", "timeout", "advertise-tags",
            "advertise-routes", "exit-node", "operator", "netfilter-mode"}


def cmd_up(sock_path, args):
    flags, rest = parse_flags(args, UP_BOOL, UP_VALUE, "up")
    if rest:
        sys.stderr.write(f"too many non-flag arguments: {rest}\n")
        sys.exit(1)
    if "force-reauth" in flags:
        loud("--force-reauth")
    timeout = go_duration(flags.get("timeout", "0s"))
    # Like the real CLI: the daemon and the flags are checked before the key file is opened.
    connect(sock_path).close()
    key = flags.get("auth-key", flags.get("authkey"))
    if key is not None and key.startswith("file:"):
        with open(key[len("file:"):]) as f:
            key = f.read().strip()
    req = {"op": "up", "authkey": key, "hostname": flags.get("hostname"),
           "reset": flags.get("reset") == "true", "timeout": timeout}
    for line in call(sock_path, req):
        msg = json.loads(line)
        if msg.get("event") == "url":
            sys.stdout.write(f"\nTo authenticate, visit:\n\n\t{msg['url']}\n\n")
            sys.stdout.flush()
        elif "error" in msg:
            sys.stderr.write(msg["error"] + "\n")
            sys.exit(1)
        elif msg.get("result") == "ok":
            if msg.get("success"):
                sys.stdout.write("Success.\n")
            sys.exit(0)
    loud("LocalAPI closed during up")


def cmd_status(sock_path, args):
    flags, rest = parse_flags(args, {"json", "peers", "self", "active"}, {"web"}, "status")
    if rest:
        loud(f"status arguments {rest}")
    status = json.loads(call(sock_path, {"op": "status"}).readline())
    if flags.get("json") == "true":
        sys.stdout.write(json.dumps(status, indent=2) + "\n")
        return 0
    state = status["BackendState"]
    if state == "NeedsLogin":
        sys.stdout.write("Logged out.\n")
        return 1
    if state == "Stopped":
        sys.stdout.write("Tailscale is stopped.\n")
        return 1
    ip = status["TailscaleIPs"][0]
    sys.stdout.write(f"{ip}  {status['Self']['HostName']}  sim@  linux  -\n")
    return 0


def tailscale(args):
    flags, rest = parse_flags(args, set(), {"socket"}, "tailscale")
    sock_path = flags.get("socket", "/var/run/tailscale/tailscaled.sock")
    if not rest:
        loud("no subcommand")
    sub, sub_args = rest[0], rest[1:]
    if sub == "up":
        cmd_up(sock_path, sub_args)
    elif sub == "status":
        sys.exit(cmd_status(sock_path, sub_args))
    elif sub == "down":
        call(sock_path, {"op": "down"}).readline()
        sys.exit(0)
    elif sub == "version":
        sys.stdout.write(VERSION + "\n")
    else:
        loud(f"subcommand {sub!r}")


def main():
    name = os.path.basename(sys.argv[0])
    if name.endswith("tailscaled"):
        tailscaled(sys.argv[1:])
    else:
        tailscale(sys.argv[1:])


if __name__ == "__main__":
    main()
