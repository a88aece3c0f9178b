// The etcd server, built from go.etcd.io/etcd/server/v3 at the version that
// k8s.io/kubernetes requires, so the apiserver and its storage always match.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
