// Package kubernetes has no code: it holds the gateway's Kubernetes
// manifests (kustomization.yaml and the files it lists, README.md), and its
// tests render them with kustomize, decode every object strictly into the
// Kubernetes API types and check them against the gateway's configuration
// and routes, since no cluster runs in CI.
package kubernetes
