package loadtest

import (
	"math"
	"strings"
	"testing"
)

func TestValidateRefusesBadConfigs(t *testing.T) {
	ok := func() Config { return Config{Addr: "x:1", Mix: Mix{Get: 1}} }
	for _, tt := range []struct {
		name   string
		change func(*Config)
		want   string // in the error
	}{
		{"negative zipf", func(c *Config) { c.Zipf = -1 }, "zipf"},
		{"NaN zipf", func(c *Config) { c.Zipf = math.NaN() }, "zipf"},
		{"infinite zipf", func(c *Config) { c.Zipf = math.Inf(1) }, "zipf"},
		{"minus infinite zipf", func(c *Config) { c.Zipf = math.Inf(-1) }, "zipf"},
		{"negative zipf with a hotspot", func(c *Config) { c.Zipf, c.Hotspot = -1, true }, "zipf"},
		{"zipf and a hotspot", func(c *Config) { c.Zipf, c.Hotspot = 0.99, true }, "not both"},
		{"a space in the prefix", func(c *Config) { c.Prefix = "a b" }, "prefix"},
		{"a tab in the prefix", func(c *Config) { c.Prefix = "a\tb" }, "prefix"},
		{"a newline in the prefix", func(c *Config) { c.Prefix = "a\r\nflush_all\r\n" }, "prefix"},
		{"DEL in the prefix", func(c *Config) { c.Prefix = "a\x7f" }, "prefix"},
		{"keys over 250 bytes", func(c *Config) { c.Prefix, c.Keys = strings.Repeat("p", 245), 100000 }, "251 bytes"},
	} {
		cfg := ok()
		tt.change(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v, want an error about %q", tt.name, err, tt.want)
		}
	}
	longest := ok()
	longest.Prefix, longest.Keys = strings.Repeat("p", 244), 100000 // User:100000 of 250 bytes
	if err := longest.Validate(); err != nil {
		t.Errorf("keys of 250 bytes: %v", err)
	}
	for _, zipf := range []float64{0, 0.5, 0.99, 1, 2} {
		cfg := ok()
		cfg.Zipf = zipf
		if err := cfg.Validate(); err != nil {
			t.Errorf("zipf %v: %v", zipf, err)
		}
	}
}
