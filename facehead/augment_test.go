package facehead

import (
	"testing"

	"github.com/facever/facever/align"
)

func testChip(n int) align.Chip {
	c := align.Chip{Size: n, Pix: make([]uint8, 3*n*n)}
	for i := range c.Pix {
		c.Pix[i] = uint8((i*37 + i/7) % 251)
	}
	return c
}

func TestAugment(t *testing.T) {
	c := testChip(8)
	f, err := Augment(c, "flip", 0)
	if err != nil {
		t.Fatal(err)
	}
	ff, _ := Augment(f, "flip", 0)
	for i := range c.Pix {
		if ff.Pix[i] != c.Pix[i] {
			t.Fatal("flipping twice does not give the chip back")
		}
	}
	if f.Pix[0] != c.Pix[3*7] || f.Pix[1] != c.Pix[3*7+1] {
		t.Fatal("flip did not mirror the first row")
	}
	j1, _ := Augment(c, "jitter", 42)
	j2, _ := Augment(c, "jitter", 42)
	j3, _ := Augment(c, "jitter", 43)
	same, diff := true, false
	for i := range c.Pix {
		same = same && j1.Pix[i] == j2.Pix[i]
		diff = diff || j1.Pix[i] != j3.Pix[i]
	}
	if !same || !diff {
		t.Fatalf("jitter: same seed same result %v, other seed differs %v", same, diff)
	}
	// A flat chip stays flat under blur; an impulse spreads to a 5×5 square
	// whose weights sum to the impulse.
	flat := align.Chip{Size: 8, Pix: make([]uint8, 3*64)}
	for i := range flat.Pix {
		flat.Pix[i] = 100
	}
	b, _ := Augment(flat, "blur", 0)
	for _, v := range b.Pix {
		if v != 100 {
			t.Fatalf("blur of a flat chip changed it: %d", v)
		}
	}
	imp := align.Chip{Size: 9, Pix: make([]uint8, 3*81)}
	imp.Pix[3*(4*9+4)] = 250
	b, _ = Augment(imp, "blur", 0)
	total := 0
	for i := 0; i < len(b.Pix); i += 3 {
		total += int(b.Pix[i])
	}
	if total < 240 || total > 260 || b.Pix[3*(4*9+4)] >= 250 || b.Pix[3*(4*9+6)] == 0 || b.Pix[3*(4*9+7)] != 0 {
		t.Fatalf("blur of an impulse: total %d, centre %d", total, b.Pix[3*(4*9+4)])
	}
	if _, err := Augment(c, "rotate", 0); err == nil {
		t.Fatal("unknown augmentation: want an error")
	}
	if _, err := Augment(align.Chip{Size: 3, Pix: make([]uint8, 5)}, "flip", 0); err == nil {
		t.Fatal("malformed chip: want an error")
	}
}
