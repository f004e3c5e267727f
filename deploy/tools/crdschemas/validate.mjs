// Reads a JSON array of Kubernetes objects on stdin; validates each ServiceMonitor, PodMonitor and
// PrometheusRule against the CRD schema of the pinned @kubernetes-models/prometheus-operator (types,
// enums, patterns such as durations, required fields). Prints one line per object; exit 1 if any fails.
import { readFileSync } from "node:fs";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";

const kinds = { ServiceMonitor, PodMonitor, PrometheusRule };
let failed = false;
for (const obj of JSON.parse(readFileSync(0, "utf8"))) {
  const Kind = kinds[obj.kind];
  if (!Kind) continue;
  try {
    new Kind(obj).validate();
    console.log(`valid ${obj.kind}/${obj.metadata.name}`);
  } catch (err) {
    failed = true;
    console.log(`INVALID ${obj.kind}/${obj.metadata.name}: ${err.message}`);
  }
}
process.exit(failed ? 1 : 0);
