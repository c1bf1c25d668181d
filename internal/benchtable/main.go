// Command benchtable reads `go test -bench` output on standard input and
// prints a Markdown table with the median of each benchmark's repeated
// runs (-count N): time per operation in milliseconds and every custom
// metric the benchmark reported. `make bench` uses it.
package main

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

type series struct {
	name    string
	metrics map[string][]float64
	order   []string
}

func main() {
	var all []*series
	byName := map[string]*series{}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndex(name, "-"); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		s := byName[name]
		if s == nil {
			s = &series{name: strings.TrimPrefix(name, "Benchmark"), metrics: map[string][]float64{}}
			byName[name] = s
			all = append(all, s)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			unit := f[i+1]
			if unit == "ns/op" {
				unit, v = "ms/op", v/1e6
			}
			if _, ok := s.metrics[unit]; !ok {
				s.order = append(s.order, unit)
			}
			s.metrics[unit] = append(s.metrics[unit], v)
		}
	}
	if len(all) == 0 {
		fmt.Fprintln(os.Stderr, "benchtable: no benchmark lines on standard input")
		os.Exit(1)
	}
	fmt.Println("| benchmark | runs | medians |")
	fmt.Println("|---|---|---|")
	for _, s := range all {
		var parts []string
		runs := 0
		for _, u := range s.order {
			v := append([]float64(nil), s.metrics[u]...)
			sort.Float64s(v)
			runs = len(v)
			m := v[len(v)/2]
			if len(v)%2 == 0 {
				m = (v[len(v)/2-1] + v[len(v)/2]) / 2
			}
			parts = append(parts, fmt.Sprintf("%s %s", format(m), u))
		}
		fmt.Printf("| %s | %d | %s |\n", s.name, runs, strings.Join(parts, ", "))
	}
}

func format(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}
