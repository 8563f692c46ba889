# The reconstruction runs in the background so that the shell can act on the signal Slurm
# sends ahead of the time limit (--signal=B:USR1@{{margin_s}}): the job requeues itself and
# its next start resumes from the store, up to {{max_requeues}} times (flytomo submit --max-requeues).
requeue_at_time_limit() {
    if [ "${SLURM_RESTART_COUNT:-0}" -lt {{max_requeues}} ]; then
        echo "flytomo-recon: the time limit is near at $(date -Is): job requeued (start $(( ${SLURM_RESTART_COUNT:-0} + 2 )) of at most $(( {{max_requeues}} + 1 ))); it resumes where this one stops"
        scontrol requeue "$SLURM_JOB_ID" \
            || echo "flytomo-recon: scontrol requeue failed (above): the job runs on to its time limit; the same flytomo submit goes on from the store"
    else
        echo "flytomo-recon: the time limit is near and the job has been requeued {{max_requeues}} times: not again; the same flytomo submit goes on from the store"
    fi
}
trap requeue_at_time_limit USR1
# What the analysis job reads: this job's exit code, written only when the reconstruction
# ended by itself (0 all done, 1 some scans failed, 3 some still being written; the analysis
# runs after any of these, on the scans done).
exit_file="recon-${SLURM_JOB_ID:-none}.exit"
rm -f -- "$exit_file"
{{command}} &
step=$!
while kill -0 "$step" 2>/dev/null; do wait "$step" || true; done  # a trapped signal ends wait early
rc=0
wait "$step" || rc=$?  # its exit code (bash keeps it)
echo "$rc" > "$exit_file.tmp" && mv -f -- "$exit_file.tmp" "$exit_file"
case "$rc" in
    0) echo "flytomo-recon: finished at $(date -Is)" ;;
    1) echo "flytomo-recon: finished at $(date -Is); some scans failed (above): the analysis job takes the others" ;;
    3) echo "flytomo-recon: finished at $(date -Is); scans still being written were left to a later run (above): the analysis job takes the others" ;;
    *) echo "flytomo-recon: ended with exit code $rc at $(date -Is): the analysis job will not analyse" ;;
esac
exit "$rc"
