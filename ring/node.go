package ring

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ParseNode parses a backend as the configuration writes it: "host:port",
// "host:port weight", or twemproxy's "host:port:weight". An IPv6 host goes in
// brackets, "[::1]:11211". The port must be a decimal number from 1 to 65535
// and a weight, when given, a decimal number of at least 1. Twemproxy's
// trailing server name ("host:port:weight name") is refused: objcache hashes
// the address, as twemproxy does for servers without a name.
func ParseNode(s string) (Node, error) {
	addr, w, err := parseNode(s)
	if err != nil {
		return Node{}, fmt.Errorf("ring: parse node %q: %w", s, err)
	}
	return Node{Addr: addr, Weight: w}, nil
}

func parseNode(s string) (addr string, weight int, err error) {
	addr, w, hasWeight, err := splitWeight(s)
	if err != nil {
		return "", 0, err
	}
	if err := checkAddr(addr); err != nil {
		return "", 0, err
	}
	if !hasWeight {
		return addr, 1, nil
	}
	weight = decimal(w)
	if weight < 1 {
		return "", 0, fmt.Errorf("weight %q is not a number of at least 1", w)
	}
	return addr, weight, nil
}

// splitWeight splits s into the address and, if s has one, the weight.
func splitWeight(s string) (addr, weight string, hasWeight bool, err error) {
	fields := strings.Fields(s)
	switch len(fields) {
	case 1:
		addr = fields[0]
	case 2:
		return fields[0], fields[1], true, nil
	default:
		return "", "", false, errors.New(`want "host:port", "host:port weight" or "host:port:weight"`)
	}
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr, "", false, nil
	}
	// Not a plain host:port: try twemproxy's host:port:weight.
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return addr, "", false, nil // checkAddr reports it
	}
	return addr[:i], addr[i+1:], true, nil
}

// checkAddr reports whether addr is a host and a valid port.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("empty host")
	}
	if n := decimal(port); n < 1 || n > 65535 {
		return fmt.Errorf("invalid port %q", port)
	}
	return nil
}

// decimal returns the value of s, made of ASCII digits only, or -1.
func decimal(s string) int {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return -1
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}
