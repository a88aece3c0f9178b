// The pod sandbox ("pause") process of tests/cluster's node: built locally
// because no registry is reachable; no dependencies.
module argon.dev/pause

go 1.26.0
