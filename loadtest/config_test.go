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
	} {
		cfg := ok()
		tt.change(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v, want an error about %q", tt.name, err, tt.want)
		}
	}
	for _, zipf := range []float64{0, 0.5, 0.99, 1, 2} {
		cfg := ok()
		cfg.Zipf = zipf
		if err := cfg.Validate(); err != nil {
			t.Errorf("zipf %v: %v", zipf, err)
		}
	}
}
