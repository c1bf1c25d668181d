package bytesize

import "testing"

func TestParse(t *testing.T) {
	for in, want := range map[string]int64{"4GiB": 4 << 30, "512MB": 512e6, "1000000": 1e6, "1.5 KiB": 1536, "2g": 2e9} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "0", "GB", "4XB", "1e30GB"} {
		if _, err := Parse(in); err == nil {
			t.Errorf("Parse(%q): no error", in)
		}
	}
}

func TestFormat(t *testing.T) {
	for n, want := range map[int64]string{512: "512 B", 1536: "1.5 KiB", 4 << 30: "4.0 GiB", 3 << 20: "3.0 MiB"} {
		if got := Format(n); got != want {
			t.Errorf("Format(%d) = %q, want %q", n, got, want)
		}
	}
}
