package protocol

import "bytes"

// MetaStatus is the status code that starts the reply line of a meta
// command.
type MetaStatus uint8

// The statuses of the meta replies that ParseMetaReply reads: those of ms
// (meta set).
const (
	MetaStored    MetaStatus = iota + 1 // HD: the item was stored
	MetaNotStored                       // NS: not stored (in add mode, an item exists)
	MetaExists                          // EX: the item's CAS value is not the one given
	MetaNotFound                        // NF: a CAS value was given and there is no item
)

var metaStatuses = map[string]MetaStatus{
	"HD": MetaStored, "NS": MetaNotStored, "EX": MetaExists, "NF": MetaNotFound,
}

// MetaReply is a parsed meta reply line.
type MetaReply struct {
	Status MetaStatus
	Cas    uint64 // the item's CAS value, returned for the c flag
	HasCas bool
}

// ParseMetaReply parses the reply line of a meta command, "\r\n" included:
// a two-letter status and the return flags, each a letter followed by its
// value, such as "HD c42\r\n". Flags other than c are skipped. ok is false
// for any other line, an error line such as "SERVER_ERROR out of memory
// storing object\r\n" included.
func ParseMetaReply(line []byte) (rep MetaReply, ok bool) {
	body, found := bytes.CutSuffix(line, []byte("\r\n"))
	if !found || len(body) < 2 {
		return rep, false
	}
	if rep.Status, ok = metaStatuses[string(body[:2])]; !ok {
		return rep, false
	}
	rest := body[2:]
	for len(rest) > 0 {
		if rest[0] != ' ' {
			return MetaReply{}, false
		}
		rest = rest[1:]
		flag := rest
		if i := bytes.IndexByte(rest, ' '); i >= 0 {
			flag = rest[:i]
		}
		rest = rest[len(flag):]
		if len(flag) == 0 {
			return MetaReply{}, false
		}
		if flag[0] == 'c' {
			if rep.Cas, ok = parseDigits(flag[1:]); !ok {
				return MetaReply{}, false
			}
			rep.HasCas = true
		}
	}
	return rep, true
}
