// The linearizability checker the Argon tests run (main.go); built by
// tests/infra/bootstrap.
module argon.dev/lincheck

go 1.26.0

require github.com/anishathalye/porcupine v1.3.1
