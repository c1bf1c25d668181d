// Package progress draws a one-line progress bar on a terminal, or prints a
// line every tenth of the work when the output is not a terminal.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Bar reports progress of a counted task.
type Bar struct {
	mu       sync.Mutex
	w        io.Writer
	label    string
	total    int
	start    time.Time
	last     time.Time
	tty      bool
	lastTen  int
	finished bool
	extra    string
	noRate   bool
}

// HideRate stops the bar from printing units per second (for bars whose
// units are not work items, such as per-mille of training).
func (b *Bar) HideRate() *Bar {
	if b != nil {
		b.noRate = true
	}
	return b
}

// New returns a bar writing to w (nil: no output) for total units.
func New(w io.Writer, label string, total int) *Bar {
	b := &Bar{w: w, label: label, total: total, start: time.Now(), lastTen: -1}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			b.tty = true
		}
	}
	return b
}

// Set reports that done units are complete; extra is shown after the counts
// (for example the current loss).
func (b *Bar) Set(done int, extra string) {
	if b == nil || b.w == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		return
	}
	b.extra = extra
	now := time.Now()
	rate := ""
	if !b.noRate {
		rate = fmt.Sprintf("%.1f/s ", float64(done)/now.Sub(b.start).Seconds())
	}
	if b.tty {
		if now.Sub(b.last) < 100*time.Millisecond && done < b.total {
			return
		}
		b.last = now
		const width = 30
		fill := 0
		if b.total > 0 {
			fill = width * done / b.total
		}
		fmt.Fprintf(b.w, "\r%s [%s%s] %d/%d %s%s\x1b[K", b.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill), done, b.total, rate, extra)
		return
	}
	if b.total <= 0 {
		return
	}
	if ten := 10 * done / b.total; ten != b.lastTen {
		b.lastTen = ten
		fmt.Fprintf(b.w, "%s: %d%% %s%s\n", b.label, 100*done/b.total, rate, extra)
	}
}

// Done ends the bar's line.
func (b *Bar) Done() {
	if b == nil || b.w == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tty && !b.finished {
		fmt.Fprintln(b.w)
	}
	b.finished = true
}
