// Package deploy has no code: its tests check the repository's Dockerfile,
// docker-compose.yml and .env.example against the binaries they run (the
// variables each binary reads, its flags, ports and the dev credentials the
// services share), since no Docker engine runs in CI; and that several
// gateway replicas behind a load balancer lose no message when one is
// stopped (replicas_test.go).
package deploy
