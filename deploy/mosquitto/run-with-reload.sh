#!/bin/sh
# Start Mosquitto once the backend has written its password file and ACL, then reload it
# (SIGHUP: Mosquitto re-reads both without dropping anyone) whenever their contents change.
# POSIX sh: runs in the eclipse-mosquitto image (busybox) and on Debian.
#   AUTH_DIR      where the backend writes passwd and acl   (/mosquitto/auth)
#   MOSQUITTO_CONF                                           (/mosquitto/config/mosquitto.conf)
#   RELOAD_EVERY  seconds between looks                      (5)
set -eu
auth=${AUTH_DIR:-/mosquitto/auth}
conf=${MOSQUITTO_CONF:-/mosquitto/config/mosquitto.conf}
every=${RELOAD_EVERY:-5}

while [ ! -s "$auth/passwd" ] || [ ! -s "$auth/acl" ]; do
  echo "run-with-reload: waiting for the backend to write $auth/passwd and $auth/acl"
  sleep 1
done

digest() { cat "$auth/passwd" "$auth/acl" | cksum; }

mosquitto -c "$conf" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM INT
last=$(digest)
while kill -0 "$pid" 2>/dev/null; do
  sleep "$every" &
  wait $! || true
  now=$(digest)
  if [ "$now" != "$last" ]; then
    echo "run-with-reload: auth files changed; reloading mosquitto"
    kill -HUP "$pid"
    last=$now
  fi
done
wait "$pid"
