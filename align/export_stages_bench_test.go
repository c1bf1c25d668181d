package align

import "time"

// Stages is what a stage clock (see Aligner.lap) added up: time and
// count per step.
type Stages struct {
	Spent map[string]time.Duration
	Count map[string]int
}

// ClockStages makes a's Detect add up the time of its steps on now (one
// goroutine at a time); the returned Stages fill as Detect runs.
func ClockStages(a *Aligner, now func() time.Duration) Stages {
	s := Stages{Spent: map[string]time.Duration{}, Count: map[string]int{}}
	a.clock = &stageClock{now: now, spent: s.Spent, count: s.Count}
	return s
}
