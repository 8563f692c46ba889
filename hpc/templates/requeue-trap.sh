# Slurm signals this shell {{margin_s}} s ahead of the time limit (--signal=B:USR1@{{margin_s}}): the
# job requeues itself and its next start resumes from the store, up to {{max_requeues}} times
# (flytomo submit --max-requeues).
requeue_at_time_limit() {
    if [ "${SLURM_RESTART_COUNT:-0}" -lt {{max_requeues}} ]; then
        echo "flytomo-recon: the time limit is near at $(date -Is): job requeued (start $(( ${SLURM_RESTART_COUNT:-0} + 2 )) of at most $(( {{max_requeues}} + 1 ))); it resumes where this one stops, once Slurm lets it start again (about 2 minutes; squeue shows it pending, reason BeginTime)"
        scontrol requeue "$SLURM_JOB_ID" \
            || echo "flytomo-recon: scontrol requeue failed (above): the job runs on to its time limit; the same flytomo submit goes on from the store"
    else
        echo "flytomo-recon: the time limit is near and the job has been requeued {{requeued_times}} (Slurm's restart count, which requeues by an admin or a preemption raise too): not again; the same flytomo submit goes on from the store"
    fi
}
trap requeue_at_time_limit USR1
