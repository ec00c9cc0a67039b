# singleton-lock's tests: a real etcd (Debian's etcd-server, etcdctl from etcd-client) for the
# `etcd` feature's tests. They start their own etcd members on loopback ports with temp dirs.
# protobuf-compiler + libprotobuf-dev (google/protobuf/*.proto): etcd-client's build script runs
# `protoc` on etcd's .proto files.
need_etcd=()
for pkg in etcd-server etcd-client protobuf-compiler libprotobuf-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need_etcd+=("$pkg")
done
if ((${#need_etcd[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_etcd[@]}" >/dev/null
fi
# The package enables an etcd service on 127.0.0.1:2379; the tests never use it (own ports).
export SINGLETON_LOCK_TEST_ETCD=/usr/bin/etcd
unset need_etcd
