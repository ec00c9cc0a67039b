# intent-protocol / host-reactor: systemd-analyze validates the generated units in the tests
# (package systemd); inotifywait (inotify-tools) is the peer the intent_reactor benchmark
# compares against. Both are Debian 12 packages.
intent_need=()
command -v systemd-analyze >/dev/null 2>&1 || intent_need+=(systemd)
command -v inotifywait >/dev/null 2>&1 || intent_need+=(inotify-tools)
if ((${#intent_need[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${intent_need[@]}" >/dev/null
fi
unset intent_need
