// Package tombstone defines the markers objcache stores under object keys
// and the rule that decides how a fill may store a row.
//
// A key of a model is in one of four states on its memcached node: absent, a
// row (the JSON object, flags 0), a tombstone (written by a delete), or a
// negative entry (the row does not exist). Markers are told apart from rows
// by their flags, so a row is never copied or inspected to classify it.
//
// The admission rule closes the stale-set race without client changes: a
// fill remembers what it saw when it missed. If it saw nothing it stores
// with add; if it saw a marker it stores with cas on the marker's CAS value.
// A delete that lands after the fill read the database changes the key, so
// the stale fill fails and stores nothing. If the read of the key failed,
// the node may hold a newer tombstone that the fill could not see, so the
// fill stores nothing at all.
//
// A marker is no item to a client, so the same rule decides a client's add
// of an object key: it stores where the key is absent, or by cas over the
// marker it read, and not over a row.
package tombstone

// Flags of the markers. A client never sees a marker through the proxy; an
// application that sets these flags itself under a model key would have its
// value read as a marker.
const (
	FlagsTombstone uint32 = 0x6f630001 // "oc" 0 1
	FlagsNegative  uint32 = 0x6f630002 // "oc" 0 2
)

// The markers' values, for whoever looks at a node by hand.
var (
	TombstoneValue = []byte("objcache:tombstone")
	NegativeValue  = []byte("objcache:negative")
)

// Kind is the state of an object key on its node.
type Kind uint8

// The states of an object key.
const (
	Absent    Kind = iota // no item
	Row                   // a value a client may see
	Tombstone             // deleted: a miss that must be refilled by cas
	Negative              // the row does not exist: a miss that is not refilled
)

// Classify returns the kind of an item read with flags, or Absent when the
// read found nothing.
func Classify(found bool, flags uint32) Kind {
	switch {
	case !found:
		return Absent
	case flags == FlagsTombstone:
		return Tombstone
	case flags == FlagsNegative:
		return Negative
	default:
		return Row
	}
}

// Seen is what a reader saw when it missed: the kind, the item's CAS value
// for a marker, and whether the read failed.
type Seen struct {
	Kind   Kind
	Cas    uint64
	Failed bool // the backend read errored: it counts as a miss, but the fill must not store
}

// Store is how a fill stores what it loaded.
type Store uint8

// The ways a fill stores.
const (
	Skip Store = iota // store nothing
	Add               // store only if the key is still absent
	Cas               // store only if the key still holds the marker seen
)

// String names s as the memcached command that carries it.
func (s Store) String() string {
	switch s {
	case Add:
		return "add"
	case Cas:
		return "cas"
	default:
		return "skip"
	}
}

// Admit returns how a fill (or a client's add) that saw seen may store, and
// the CAS value for Cas. A row is never overwritten: Skip.
func Admit(seen Seen) (Store, uint64) {
	switch {
	case seen.Failed:
		return Skip, 0
	case seen.Kind == Absent:
		return Add, 0
	case seen.Kind == Tombstone || seen.Kind == Negative:
		return Cas, seen.Cas
	default:
		return Skip, 0
	}
}
