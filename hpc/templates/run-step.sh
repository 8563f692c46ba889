{{requeue_trap}}
# What the analysis job reads: this job's exit code, written only when the reconstruction
# ended by itself (0 all done, 1 some scans failed, 3 some still being written; the analysis
# runs after any of these, on the scans done).
exit_file="recon-${SLURM_JOB_ID:-none}.exit"
rm -f -- "$exit_file"
# in the background: the shell acts on a trapped signal while it waits
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
