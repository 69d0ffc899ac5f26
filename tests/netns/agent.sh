#!/usr/bin/env bash
# Launch agent for Open MPI (--mca plm_rsh_agent) in the network-namespace rig (tests/netns/rig.sh):
# where ssh would log in to HOST, this enters HOST's namespace. HOST is an address from the rig's
# hostfile (10.R.S.H) or a namespace name; the map is the rig's hosts file, named by
# QMESH_RIG_DIR in the environment mpirun passes on.
#   agent.sh HOST COMMAND...     (Open MPI passes the orted command line as words for a shell)
set -euo pipefail
if [ $# -lt 2 ] || [ "$1" = --help ]; then
  echo "usage: agent.sh HOST COMMAND... (the rig's plm_rsh_agent: runs COMMAND in HOST's namespace)"
  [ "${1:-}" = --help ] && exit 0
  exit 2
fi
host=$1; shift
# QMESH_RIG_AGENT_LOG=FILE: append each command Open MPI asks for (to debug a launch)
[ -z "${QMESH_RIG_AGENT_LOG:-}" ] || printf "%q " "$@" >> "$QMESH_RIG_AGENT_LOG"
: "${QMESH_RIG_DIR:?agent.sh: QMESH_RIG_DIR is not set (run it through rig_mpirun in tests/netns/rig.sh)}"
ns=$(awk -v h="$host" '$1 == h || $2 == h { print $2; exit }' "$QMESH_RIG_DIR/hosts")
[ -n "$ns" ] || { echo "agent.sh: host $host is not in $QMESH_RIG_DIR/hosts" >&2; exit 255; }
# like ssh, first reach the host over the network, from the launcher's namespace: a TCP connect
# to port 22, where a refusal means the host answered; a timeout or no route, that it does not
# (ssh's exit status 255)
addr=$(awk -v n="$ns" '$2 == n { print $1; exit }' "$QMESH_RIG_DIR/hosts")
set +e
probe=$(timeout "${QMESH_RIG_CONNECT_TIMEOUT:-3}" bash -c "exec 3<> /dev/tcp/$addr/22" 2>&1)
prc=$?
set -e
if [ $prc != 0 ] && [[ $probe != *refused* ]]; then
  echo "agent.sh: connect to host $host ($addr) port 22: ${probe:-timed out}" >&2
  exit 255
fi
# every host has its own session directory (/tmp/ompi.HOSTNAME.UID by default): the namespaces
# share the file system and the host name, and one host's orted removing the shared tree at its
# exit could otherwise pull it from under another host's orted starting
# (mpirun passes its own orte_tmpdir_base on the orted's command line: swapped for this host's)
mkdir -p "$QMESH_RIG_DIR/tmp/$ns"
cmd="$*"
cmd=${cmd//"$QMESH_RIG_DIR/tmp/${QMESH_RIG_HOST0:-none}"/"$QMESH_RIG_DIR/tmp/$ns"}
exec ip netns exec "$ns" /bin/sh -c "$cmd"
