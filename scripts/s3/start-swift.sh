#!/usr/bin/env bash
# Starts OpenStack Swift with its s3api middleware on loopback: a real S3 implementation for tests and benchmarks.
# Idempotent: installs Debian's packages when missing (as root), builds the rings once, starts what is not running,
# waits until a signed S3 request succeeds, and prints the environment to use (also written to $SWIFT_DIR/s3.env).
#
#   scripts/s3/start-swift.sh            # then: set -a; . /srv/snapgraph-swift/s3.env; set +a
#   scripts/s3/stop-swift.sh
#
# Two tempauth accounts: `snapgraph:blobs` (the server's blob bucket in tests) and `export:dest` (another tenant's
# bucket, for export destinations). Their secrets are generated once and kept in $SWIFT_DIR/etc (mode 0600).
set -euo pipefail

SWIFT_DIR=${SNAPGRAPH_SWIFT_DIR:-/srv/snapgraph-swift}
PROXY_PORT=${SNAPGRAPH_SWIFT_PORT:-8080}
PORT_BASE=${SNAPGRAPH_SWIFT_STORAGE_PORT_BASE:-6200} # object, container, account: base, base+1, base+2
MEMCACHED_PORT=${SNAPGRAPH_SWIFT_MEMCACHED_PORT:-11211}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
ETC=$SWIFT_DIR/etc
RUN=$SWIFT_DIR/run
LOG=$SWIFT_DIR/log
ENV_FILE=$SWIFT_DIR/s3.env

say() { echo "start-swift: $*" >&2; }

install_packages() {
  command -v swift-proxy-server >/dev/null && command -v swift-object-server >/dev/null &&
    command -v swift-container-server >/dev/null && command -v swift-account-server >/dev/null &&
    command -v swift-ring-builder >/dev/null && command -v memcached >/dev/null && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    say "Swift is not installed and cannot be installed here (needs root and apt-get)"
    return 1
  fi
  say "installing Debian's Swift packages"
  # Debian's packages try to start their services; there are no init scripts running here, so that is refused quietly.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  local status=0
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    swift swift-proxy swift-object swift-container swift-account memcached >/dev/null) || status=$?
  rm -f /usr/sbin/policy-rc.d
  return $status
}

secret() { # a secret generated once per account
  local file=$ETC/$1.secret
  [ -s "$file" ] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$file")
  cat "$file"
}

write_configs() {
  mkdir -p "$ETC" "$RUN" "$LOG" "$SWIFT_DIR/node/d1"
  chmod 700 "$ETC"
  # Every Swift process reads the cluster's hash path salt from /etc/swift/swift.conf.
  if [ ! -f /etc/swift/swift.conf ]; then
    mkdir -p /etc/swift
    printf '[swift-hash]\nswift_hash_path_suffix = snapgraph-test\nswift_hash_path_prefix = snapgraph-test\n\n[storage-policy:0]\nname = Policy-0\ndefault = yes\n' >/etc/swift/swift.conf
  fi
  local user; user=$(id -un)
  local i=0
  for server in object container account; do
    cat >"$ETC/$server-server.conf" <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $((PORT_BASE + i))
devices = $SWIFT_DIR/node
# A plain directory, not a mounted disk.
mount_check = false
swift_dir = $ETC
user = $user
workers = 1
log_level = WARNING

[pipeline:main]
pipeline = $server-server

[app:$server-server]
use = egg:swift#$server
CONF
    i=$((i + 1))
  done
  cat >"$ETC/proxy-server.conf" <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $PROXY_PORT
swift_dir = $ETC
user = $user
workers = 2
log_level = WARNING

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:tempauth]
use = egg:swift#tempauth
user_snapgraph_blobs = $(secret blobs) .admin
user_export_dest = $(secret dest) .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$MEMCACHED_PORT

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:bulk]
use = egg:swift#bulk

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo
CONF
}

build_rings() {
  local i=0
  for server in object container account; do
    if [ ! -f "$ETC/$server.ring.gz" ]; then
      swift-ring-builder "$ETC/$server.builder" create 10 1 1 >/dev/null
      swift-ring-builder "$ETC/$server.builder" add "r1z1-127.0.0.1:$((PORT_BASE + i))/d1" 100 >/dev/null
      swift-ring-builder "$ETC/$server.builder" rebalance >/dev/null || true # "no partitions reassigned" is fine
    fi
    i=$((i + 1))
  done
}

running() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

start() { # name, command...
  local name=$1; shift
  running "$name" && return 0
  nohup "$@" >>"$LOG/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

s3_answers() {
  SNAPGRAPH_S3_PROBE_ENDPOINT="http://127.0.0.1:$PROXY_PORT" SNAPGRAPH_S3_PROBE_KEY="snapgraph:blobs" \
    SNAPGRAPH_S3_PROBE_SECRET="$(secret blobs)" node "$REPO/scripts/s3/probe-s3.mjs" >/dev/null 2>&1
}

main() {
  install_packages
  write_configs
  build_rings
  command -v memcached >/dev/null
  start memcached memcached -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -u "$(id -un)" -m 64
  for server in object container account; do start "$server" "swift-$server-server" "$ETC/$server-server.conf"; done
  start proxy swift-proxy-server "$ETC/proxy-server.conf"
  local waited=0
  until s3_answers; do
    if [ $waited -ge 60 ]; then
      say "Swift's S3 endpoint did not answer within 60 s; see $LOG"
      tail -n 20 "$LOG"/*.log >&2 || true
      return 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  (umask 077 && cat >"$ENV_FILE" <<ENV
SNAPGRAPH_TEST_S3_ENDPOINT=http://127.0.0.1:$PROXY_PORT
SNAPGRAPH_TEST_S3_ACCESS_KEY_ID=snapgraph:blobs
SNAPGRAPH_TEST_S3_SECRET_ACCESS_KEY=$(secret blobs)
SNAPGRAPH_TEST_S3_SECOND_ACCESS_KEY_ID=export:dest
SNAPGRAPH_TEST_S3_SECOND_SECRET_ACCESS_KEY=$(secret dest)
ENV
  )
  say "S3 (Swift s3api) answers at http://127.0.0.1:$PROXY_PORT; environment in $ENV_FILE:"
  cat "$ENV_FILE"
}

main "$@"
