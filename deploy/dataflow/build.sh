#!/usr/bin/env bash
# Build and push the tailguard flex-template image, then write the template spec to Cloud Storage.
#
#   PROJECT=my-project REGION=europe-west1 REPOSITORY=tailguard BUCKET=my-bucket deploy/dataflow/build.sh
#
# Needs: gcloud (authenticated), Docker or Cloud Build, an Artifact Registry Docker repository.
set -euo pipefail

: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${BUCKET:?set BUCKET}"
REPOSITORY="${REPOSITORY:-tailguard}"
TAG="${TAG:-$(python3 -c 'import re;print(re.search(r"__version__ = \"([^\"]+)\"", open("tailguard/__init__.py").read()).group(1))')}"
IMAGE="${IMAGE:-${REGION}-docker.pkg.dev/${PROJECT}/${REPOSITORY}/tailguard:${TAG}}"
TEMPLATE="${TEMPLATE:-gs://${BUCKET}/templates/tailguard-${TAG}.json}"

cd "$(dirname "$0")/../.."   # the repository root is the build context

if [[ "${USE_CLOUD_BUILD:-1}" == "1" ]]; then
  # Cloud Build builds from the repository root with deploy/dataflow/Dockerfile.
  gcloud builds submit --project "$PROJECT" --region "$REGION" \
    --config /dev/stdin . <<YAML
steps:
- name: gcr.io/cloud-builders/docker
  args: [build, -f, deploy/dataflow/Dockerfile, -t, "$IMAGE", .]
images: ["$IMAGE"]
YAML
else
  docker build -f deploy/dataflow/Dockerfile -t "$IMAGE" .
  docker push "$IMAGE"
fi

gcloud dataflow flex-template build "$TEMPLATE" \
  --project "$PROJECT" \
  --image "$IMAGE" \
  --sdk-language PYTHON \
  --metadata-file deploy/dataflow/metadata.json

echo "image:    $IMAGE"
echo "template: $TEMPLATE"
