#!/usr/bin/env bash
# Install a Slurm controller, node daemon, client tools and munge from the distribution
# (Debian/Ubuntu apt). Idempotent: does nothing when the commands are already there.
# Used by the test fixture in tests/hpc/slurm/conftest.py; needs root.
#
#   sudo scripts/install-slurm.sh
#
# It only installs packages: the fixture writes its own slurm.conf and munge key in a
# temporary directory and starts the daemons itself, so nothing here starts a service.
set -euo pipefail

need=()
{ command -v slurmctld >/dev/null 2>&1 || [ -x /usr/sbin/slurmctld ]; } || need+=(slurmctld)
{ command -v slurmd    >/dev/null 2>&1 || [ -x /usr/sbin/slurmd ]; }    || need+=(slurmd)
command -v sbatch    >/dev/null 2>&1 || need+=(slurm-client)
# munged lives in /usr/sbin, which a non-root PATH may lack
{ command -v munged >/dev/null 2>&1 || [ -x /usr/sbin/munged ]; } || need+=(munge)

if [ "${#need[@]}" -eq 0 ]; then
    echo "install-slurm: slurmctld, slurmd, slurm-client and munge already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-slurm: needs root to install: ${need[*]}" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-slurm: no apt-get here; install ${need[*]} with the system's package manager" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Package post-install scripts must not start the daemons (the fixture runs its own
# with its own configuration); policy-rc.d exit 101 tells invoke-rc.d to skip them.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    made_policy=1
fi
trap '[ "$made_policy" -eq 1 ] && rm -f "$policy"' EXIT

apt-get update -qq
apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge
echo "install-slurm: installed $(sbatch --version 2>/dev/null || echo slurm)"
