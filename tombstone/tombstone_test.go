package tombstone

import "testing"

func TestClassifyTellsMarkersFromRowsByFlags(t *testing.T) {
	tests := []struct {
		found bool
		flags uint32
		want  Kind
	}{
		{false, 0, Absent},
		{false, FlagsTombstone, Absent},
		{true, 0, Row},
		{true, 42, Row},
		{true, FlagsTombstone, Tombstone},
		{true, FlagsNegative, Negative},
	}
	for _, tt := range tests {
		if got := Classify(tt.found, tt.flags); got != tt.want {
			t.Errorf("Classify(%v, %#x) = %v, want %v", tt.found, tt.flags, got, tt.want)
		}
	}
}

func TestAdmitStoresOnlyOverWhatTheFillSaw(t *testing.T) {
	tests := []struct {
		name    string
		seen    Seen
		want    Store
		wantCas uint64
	}{
		{"nothing there: add, so a concurrent delete's tombstone wins", Seen{Kind: Absent}, Add, 0},
		{"a tombstone: cas on it, so a newer delete wins", Seen{Kind: Tombstone, Cas: 7}, Cas, 7},
		{"a negative entry: cas on it", Seen{Kind: Negative, Cas: 9}, Cas, 9},
		{"the read failed: the node may hold a newer tombstone", Seen{Kind: Absent, Failed: true}, Skip, 0},
		{"a failed read of a tombstone still skips", Seen{Kind: Tombstone, Cas: 3, Failed: true}, Skip, 0},
		{"a row is not overwritten", Seen{Kind: Row, Cas: 5}, Skip, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, cas := Admit(tt.seen)
			if got != tt.want || cas != tt.wantCas {
				t.Errorf("Admit(%+v) = %v %d, want %v %d", tt.seen, got, cas, tt.want, tt.wantCas)
			}
		})
	}
}

func TestStoreNamesAreMemcachedCommands(t *testing.T) {
	for s, want := range map[Store]string{Add: "add", Cas: "cas", Skip: "skip"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), want)
		}
	}
}
