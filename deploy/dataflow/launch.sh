#!/usr/bin/env bash
# Launch the tailguard flex template, wait for the job, then publish the run (manifest.json, then LATEST).
#
#   PROJECT=my-project REGION=europe-west1 BUCKET=my-bucket \
#   TEMPLATE=gs://my-bucket/templates/tailguard-0.1.0.json \
#   IMAGE=europe-west1-docker.pkg.dev/my-project/tailguard/tailguard:0.1.0 \
#   SERVICE_ACCOUNT=tailguard-worker@my-project.iam.gserviceaccount.com \
#   INPUT='gs://my-bucket/crawl/2026-11-20/*.jsonl.gz' OUTPUT=gs://my-bucket/snapshots RUN_ID=2026-11-20 \
#   [PREVIOUS=gs://my-bucket/snapshots] [CONFIG=gs://my-bucket/config/curate.yaml] [OVERRIDES='dedup.threshold=0.85'] \
#   deploy/dataflow/launch.sh
#
# Exit codes: 0 published; 1 the job failed or the run did not reconcile (nothing published).
set -euo pipefail

: "${PROJECT:?}" "${REGION:?}" "${BUCKET:?}" "${TEMPLATE:?}" "${IMAGE:?}" "${INPUT:?}" "${OUTPUT:?}" "${RUN_ID:?}"
MACHINE_TYPE="${MACHINE_TYPE:-n2-standard-4}"
MAX_WORKERS="${MAX_WORKERS:-50}"

# gcloud splits --parameters on commas; a custom delimiter (^~^) keeps comma-separated input patterns whole.
PARAMETERS="^~^input=${INPUT}~output=${OUTPUT}~run_id=${RUN_ID}~sdk_container_image=${IMAGE}"
PARAMETERS+="~autoscaling_algorithm=THROUGHPUT_BASED"
[[ -n "${PREVIOUS:-}" ]] && PARAMETERS+="~previous=${PREVIOUS}"
[[ -n "${CONFIG:-}" ]] && PARAMETERS+="~config=${CONFIG}"
[[ -n "${OVERRIDES:-}" ]] && PARAMETERS+="~overrides=${OVERRIDES}"

JOB_ID=$(gcloud dataflow flex-template run "tailguard-${RUN_ID//[^a-zA-Z0-9-]/-}" \
  --project "$PROJECT" --region "$REGION" \
  --template-file-gcs-location "$TEMPLATE" \
  --temp-location "gs://${BUCKET}/tmp" --staging-location "gs://${BUCKET}/staging" \
  ${SERVICE_ACCOUNT:+--service-account-email "$SERVICE_ACCOUNT"} \
  --worker-machine-type "$MACHINE_TYPE" --max-workers "$MAX_WORKERS" \
  --parameters "$PARAMETERS" \
  --format 'value(job.id)')
echo "job: $JOB_ID  (https://console.cloud.google.com/dataflow/jobs/${REGION}/${JOB_ID}?project=${PROJECT})"

while :; do
  STATE=$(gcloud dataflow jobs describe "$JOB_ID" --project "$PROJECT" --region "$REGION" \
          --format 'value(currentState)')
  case "$STATE" in
    JOB_STATE_DONE) break ;;
    JOB_STATE_FAILED|JOB_STATE_CANCELLED|JOB_STATE_DRAINED|JOB_STATE_UPDATED)
      echo "job $JOB_ID ended in $STATE: run $RUN_ID not published" >&2; exit 1 ;;
    *) sleep 30 ;;
  esac
done

# Publishing runs where tailguard is installed: this checkout's venv, or the template image itself
# (docker run --rm --entrypoint python "$IMAGE" /template/deploy/dataflow/publish_run.py ...).
PYTHON="${PYTHON:-python3}"
"$PYTHON" "$(dirname "$0")/publish_run.py" --output "$OUTPUT" --run_id "$RUN_ID"
