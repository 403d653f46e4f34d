package protocol

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseMetaReply(t *testing.T) {
	tests := []struct {
		line string
		want MetaReply
		ok   bool
	}{
		{"HD c42\r\n", MetaReply{Status: MetaStored, Cas: 42, HasCas: true}, true},
		{"HD\r\n", MetaReply{Status: MetaStored}, true},
		{"NS c0\r\n", MetaReply{Status: MetaNotStored, HasCas: true}, true},
		{"EX c0\r\n", MetaReply{Status: MetaExists, HasCas: true}, true},
		{"NF\r\n", MetaReply{Status: MetaNotFound}, true},
		{"HD c18446744073709551615\r\n", MetaReply{Status: MetaStored, Cas: 1<<64 - 1, HasCas: true}, true},
		{"HD t-1 c7 kfoo b\r\n", MetaReply{Status: MetaStored, Cas: 7, HasCas: true}, true},
		{"HD Oopaque c9\r\n", MetaReply{Status: MetaStored, Cas: 9, HasCas: true}, true},

		{"HD c18446744073709551616\r\n", MetaReply{}, false}, // past 64 bits
		{"HD c\r\n", MetaReply{}, false},
		{"HD cx1\r\n", MetaReply{}, false},
		{"HD  c1\r\n", MetaReply{}, false},
		{"HD c1 \r\n", MetaReply{}, false},
		{"HDc1\r\n", MetaReply{}, false},
		{"HD c1", MetaReply{}, false},
		{"HD c1\n", MetaReply{}, false},
		{"hd c1\r\n", MetaReply{}, false},
		{"EN\r\n", MetaReply{}, false}, // a meta get's miss, not an ms reply
		{"STORED\r\n", MetaReply{}, false},
		{"SERVER_ERROR out of memory storing object\r\n", MetaReply{}, false},
		{"CLIENT_ERROR bad data chunk\r\n", MetaReply{}, false},
		{"\r\n", MetaReply{}, false},
		{"", MetaReply{}, false},
	}
	for _, tt := range tests {
		got, ok := ParseMetaReply([]byte(tt.line))
		if ok != tt.ok {
			t.Errorf("ParseMetaReply(%q) ok = %v, want %v", tt.line, ok, tt.ok)
			continue
		}
		if diff := cmp.Diff(got, tt.want); diff != "" {
			t.Errorf("ParseMetaReply(%q) (-got +want):\n%s", tt.line, diff)
		}
	}
}

func TestParseMetaReplyDoesNotAllocate(t *testing.T) {
	line := []byte("HD c123456\r\n")
	if n := testing.AllocsPerRun(100, func() { ParseMetaReply(line) }); n != 0 {
		t.Errorf("ParseMetaReply allocates %v times per call, want 0", n)
	}
}
