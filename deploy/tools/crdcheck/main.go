// crdcheck decodes ServiceMonitor, PodMonitor and PrometheusRule documents strictly into the Prometheus
// Operator's own Go types (a pinned module version): an unknown or misspelt field, or a value of the
// wrong type, is an error, as the API server's strict field validation would report it.
// Usage: crdcheck < manifests.yaml  (multi-document YAML; other kinds are skipped and counted).
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/yaml"
)

func main() {
	data, err := io.ReadAll(bufio.NewReader(os.Stdin))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	failed := false
	for i, doc := range strings.Split(string(data), "\n---") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			fmt.Printf("document %d: %v\n", i, err)
			failed = true
			continue
		}
		var target interface{}
		switch head.Kind {
		case "ServiceMonitor":
			target = &monitoringv1.ServiceMonitor{}
		case "PodMonitor":
			target = &monitoringv1.PodMonitor{}
		case "PrometheusRule":
			target = &monitoringv1.PrometheusRule{}
		default:
			fmt.Printf("skipped %s/%s\n", head.Kind, head.Metadata.Name)
			continue
		}
		if err := yaml.UnmarshalStrict(bytes.TrimSpace([]byte(doc)), target); err != nil {
			fmt.Printf("INVALID %s/%s: %v\n", head.Kind, head.Metadata.Name, err)
			failed = true
			continue
		}
		fmt.Printf("valid %s/%s\n", head.Kind, head.Metadata.Name)
	}
	if failed {
		os.Exit(1)
	}
}
