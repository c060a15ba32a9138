package policytest

import (
	"os"
	"runtime"

	"github.com/athenz-mesh/athenz-mesh/policy"
)

// EvaluatorHeap loads the bundle as authz's store does (read, index, release the decoded
// membership maps) and reports the live heap after a collection: its size and, since
// every object costs the garbage collector on each cycle, the number of objects.
func EvaluatorHeap(path string) (objects uint64, mib float64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b, err := policy.ReadBundle(f, policy.ReadOptions{})
	if err != nil {
		return 0, 0, err
	}
	ev, err := policy.NewEvaluator(b.Compiled)
	if err != nil {
		return 0, 0, err
	}
	b.Compiled.ReleaseMembers()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(ev)
	runtime.KeepAlive(b)
	return after.HeapObjects - before.HeapObjects, float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20), nil
}
