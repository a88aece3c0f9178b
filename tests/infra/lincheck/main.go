// argon-lincheck: checks that a recorded history of single-key reads and
// writes is linearizable, with porcupine (github.com/anishathalye/porcupine).
// Built by tests/infra/bootstrap; the Rust test
// sidecar/server/tests/linearizability.rs records the history and runs it.
//
// Input (stdin): a JSON array of operations
//
//	{"client": 3, "kind": "read"|"write", "key": "k1", "value": 42,
//	 "call": <ns>, "return": <ns>, "unknown": false}
//
// A read's value is what it saw (0: the key had no document). A write whose
// outcome is unknown (the client got an error) may have happened at any
// time after its call: its return is taken as never. Prints one line and
// exits 0 when linearizable, 1 when not (writing an HTML visualization to
// the path in $ARGON_LINCHECK_HTML, if set), 2 on bad input.
package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/anishathalye/porcupine"
)

type record struct {
	Client  int    `json:"client"`
	Kind    string `json:"kind"`
	Key     string `json:"key"`
	Value   int64  `json:"value"`
	Call    int64  `json:"call"`
	Return  int64  `json:"return"`
	Unknown bool   `json:"unknown"`
}

type input struct {
	write bool
	key   string
	value int64
}

// registers is one register per key, each starting at 0 (no document).
var registers = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(input).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() interface{} { return int64(0) },
	Step: func(state, in, out interface{}) (bool, interface{}) {
		i := in.(input)
		if i.write {
			return true, i.value
		}
		return out.(int64) == state.(int64), state
	},
	DescribeOperation: func(in, out interface{}) string {
		i := in.(input)
		if i.write {
			return fmt.Sprintf("%s := %d", i.key, i.value)
		}
		return fmt.Sprintf("%s -> %d", i.key, out.(int64))
	},
}

func main() {
	var records []record
	if err := json.NewDecoder(os.Stdin).Decode(&records); err != nil {
		fmt.Fprintf(os.Stderr, "argon-lincheck: reading the history: %v\n", err)
		os.Exit(2)
	}
	ops := make([]porcupine.Operation, 0, len(records))
	for _, r := range records {
		if r.Kind != "read" && r.Kind != "write" {
			fmt.Fprintf(os.Stderr, "argon-lincheck: unknown kind %q\n", r.Kind)
			os.Exit(2)
		}
		ret := r.Return
		if r.Unknown {
			if r.Kind == "read" {
				continue // a failed read constrains nothing
			}
			ret = math.MaxInt64
		}
		ops = append(ops, porcupine.Operation{
			ClientId: r.Client,
			Input:    input{write: r.Kind == "write", key: r.Key, value: r.Value},
			Call:     r.Call,
			Output:   r.Value,
			Return:   ret,
		})
	}
	result, info := porcupine.CheckOperationsVerbose(registers, ops, 5*time.Minute)
	switch result {
	case porcupine.Ok:
		fmt.Printf("linearizable: %d operations\n", len(ops))
	case porcupine.Illegal:
		if path := os.Getenv("ARGON_LINCHECK_HTML"); path != "" {
			if f, err := os.Create(path); err == nil {
				_ = porcupine.Visualize(registers, info, f)
				f.Close()
			}
		}
		fmt.Printf("NOT linearizable: %d operations\n", len(ops))
		os.Exit(1)
	default:
		fmt.Printf("undecided within the time limit: %d operations\n", len(ops))
		os.Exit(1)
	}
}
