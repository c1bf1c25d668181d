//go:build race

package enroll

// raceEnabled: the race detector slows everything about tenfold, so the
// long races run at a smaller size under it.
const raceEnabled = true

// RaceEnabled is raceEnabled for the external tests.
const RaceEnabled = raceEnabled
