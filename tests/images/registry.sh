#!/bin/bash
# tests/images/registry.sh — serve the images cached by tests/images/build with docker-registry.
#
#   registry.sh config CACHE_DIR OUTDIR
#       CACHE_DIR is the directory tests/images/build printed. Writes
#         OUTDIR/registry.yml       open registry on 127.0.0.1:5000, storage CACHE_DIR/registry
#         OUTDIR/registry-auth.yml  basic-auth registry on 127.0.0.1:5001, storage
#                                   CACHE_DIR/registry-auth, user crisd, password crisd-test
#         OUTDIR/htpasswd           bcrypt entry for crisd:crisd-test
#       Both serve their storage read-only (storage.maintenance.readonly), so the cache can be
#       bind-mounted read-only and shared by several nodes. Addresses can be changed with
#       CRISD_TEST_REGISTRY_ADDR and CRISD_TEST_REGISTRY_AUTH_ADDR.
#       Then run:  docker-registry serve OUTDIR/registry.yml
#                  docker-registry serve OUTDIR/registry-auth.yml
#       (in a clean environment: docker-registry reads REGISTRY_* variables as configuration.)
#
#   registry.sh wait HOST:PORT [SECONDS]
#       Polls http://HOST:PORT/v2/ until it answers with any HTTP status (200, or 401 for the
#       auth registry); fails after SECONDS (default 20) with a message on stderr.
#
# Sourcing this file defines crisd_registry_config and crisd_registry_wait (same arguments) and
# changes no shell options.

crisd_registry_err() { printf 'registry.sh: %s\n' "$*" >&2; }

crisd_registry_config() {
    if (($# != 2)); then
        crisd_registry_err "usage: registry.sh config CACHE_DIR OUTDIR"
        return 2
    fi
    local cache out open_addr auth_addr d
    cache=$(readlink -f -- "$1") || { crisd_registry_err "no such directory: $1"; return 1; }
    for d in registry registry-auth; do
        if [[ ! -d $cache/$d/docker/registry/v2 ]]; then
            crisd_registry_err "$cache/$d is not a registry storage; run tests/images/build and pass the directory it prints"
            return 1
        fi
    done
    mkdir -p -- "$2" || return 1
    out=$(readlink -f -- "$2") || return 1
    open_addr=${CRISD_TEST_REGISTRY_ADDR:-127.0.0.1:5000}
    auth_addr=${CRISD_TEST_REGISTRY_AUTH_ADDR:-127.0.0.1:5001}

    if command -v htpasswd >/dev/null; then
        htpasswd -nbB crisd crisd-test | sed '/^$/d' >"$out/htpasswd.tmp" || return 1
        mv -f "$out/htpasswd.tmp" "$out/htpasswd"
    elif [[ -s $cache/htpasswd ]]; then
        cp -f "$cache/htpasswd" "$out/htpasswd" || return 1
    else
        crisd_registry_err "htpasswd not found (Debian package apache2-utils) and $cache/htpasswd missing"
        return 1
    fi
    chmod 0644 "$out/htpasswd"

    # crisd_registry_yml NAME STORAGE ADDR [AUTH-YAML]
    crisd_registry_yml() {
        cat <<EOF
# Written by tests/images/registry.sh; serves $2 read-only.
version: 0.1
log:
  level: info
  fields:
    service: crisd-test-$1
storage:
  filesystem:
    rootdirectory: "$2"
  maintenance:
    uploadpurging:
      enabled: false
    readonly:
      enabled: true
  delete:
    enabled: false
  cache:
    blobdescriptor: inmemory
http:
  addr: "$3"
  secret: crisd-test-$1
  headers:
    X-Content-Type-Options: [nosniff]
${4:-}
EOF
    }
    crisd_registry_yml registry "$cache/registry" "$open_addr" >"$out/registry.yml" || return 1
    crisd_registry_yml registry-auth "$cache/registry-auth" "$auth_addr" "auth:
  htpasswd:
    realm: crisd-test
    path: \"$out/htpasswd\"" >"$out/registry-auth.yml" || return 1
    unset -f crisd_registry_yml
}

crisd_registry_wait() {
    if (($# < 1 || $# > 2)); then
        crisd_registry_err "usage: registry.sh wait HOST:PORT [SECONDS]"
        return 2
    fi
    local host=${1%:*} port=${1##*:} limit=${2:-20} code deadline
    host=${host#[}; host=${host%]}
    if [[ -z $host || ! $port =~ ^[0-9]+$ || ! $limit =~ ^[0-9]+$ ]]; then
        crisd_registry_err "wait: bad address or time: $*"
        return 2
    fi
    local t=${EPOCHREALTIME/[.,]/}
    deadline=$((t / 1000 + limit * 1000))
    while :; do
        code=$(
            exec 2>/dev/null
            exec 3<>"/dev/tcp/$host/$port" || exit 1
            printf 'GET /v2/ HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" >&3
            IFS=$' \r' read -r -t 2 _ c _ <&3 || exit 1
            echo "$c"
        ) || code=""
        if [[ $code =~ ^[0-9]{3}$ ]]; then
            return 0
        fi
        t=${EPOCHREALTIME/[.,]/}
        if ((t / 1000 >= deadline)); then
            crisd_registry_err "no registry answered on http://$1/v2/ within $limit s"
            return 1
        fi
        sleep 0.2
    done
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    cmd=${1:-}
    (($#)) && shift
    case $cmd in
        config) crisd_registry_config "$@" ;;
        wait)   crisd_registry_wait "$@" ;;
        *)      sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
    esac
fi
