package policy

import (
	"hash/maphash"
	"math/bits"
)

// nameTable maps strings to uint64 values without a single pointer in its memory: the
// names live back to back in one byte arena, and an open-addressing table of slot
// indexes finds them. A Go map[string]uint64 of a million principals costs the garbage
// collector a million string headers to scan and a million small objects to mark on every
// cycle; this costs it nothing, so a large bundle no longer lengthens each collection
// (which showed in authz's tail latency). Built once, then read concurrently without
// locks.
type nameTable struct {
	seed  maphash.Seed
	arena []byte   // every name, back to back
	ends  []uint32 // ends[i] is where name i ends in arena; it starts at ends[i-1] (0 for i = 0)
	vals  []uint64 // the value of name i
	slots []uint32 // 0: empty; else 1 + the index of the name; len is a power of two
}

// newNameTable returns a table sized for n names.
func newNameTable(n int) *nameTable {
	size := 1 << bits.Len(uint(n*2)) // load factor at most 1/2
	return &nameTable{
		seed:  maphash.MakeSeed(),
		ends:  make([]uint32, 0, n),
		vals:  make([]uint64, 0, n),
		slots: make([]uint32, size),
	}
}

// name returns name i.
func (t *nameTable) name(i uint32) []byte {
	start := uint32(0)
	if i > 0 {
		start = t.ends[i-1]
	}
	return t.arena[start:t.ends[i]]
}

// find returns the slot of name: the one holding it, or the empty one where it would go.
func (t *nameTable) find(name string) int {
	mask := len(t.slots) - 1
	for s := int(maphash.String(t.seed, name)) & mask; ; s = (s + 1) & mask {
		e := t.slots[s]
		if e == 0 || string(t.name(e-1)) == name {
			return s
		}
	}
}

// set adds name with value v, or replaces its value. It must not be called once the
// table is shared.
func (t *nameTable) set(name string, v uint64) {
	s := t.find(name)
	if e := t.slots[s]; e != 0 {
		t.vals[e-1] = v
		return
	}
	if 2*(len(t.ends)+1) > len(t.slots) {
		t.grow()
		s = t.find(name)
	}
	t.arena = append(t.arena, name...)
	t.ends = append(t.ends, uint32(len(t.arena)))
	t.vals = append(t.vals, v)
	t.slots[s] = uint32(len(t.ends))
}

// get returns the value of name.
func (t *nameTable) get(name string) (uint64, bool) {
	if t == nil || len(t.slots) == 0 {
		return 0, false
	}
	if e := t.slots[t.find(name)]; e != 0 {
		return t.vals[e-1], true
	}
	return 0, false
}

// len returns the number of names.
func (t *nameTable) len() int { return len(t.ends) }

// grow doubles the slots and places every name again.
func (t *nameTable) grow() {
	t.slots = make([]uint32, 2*len(t.slots))
	for i := range t.ends {
		t.slots[t.find(string(t.name(uint32(i))))] = uint32(i) + 1
	}
}
